package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const acctHeader = "type,timeLogged,timeQueued,orig,rcpt,dsnStatus,dsnDiag,bounceCat,dlvEsmtpAvailable,queue\n"

func TestParseAcct(t *testing.T) {
	in := acctHeader +
		`d,2026-11-28 10:00:00+0000,2026-11-28 09:59:59+0000,a@b.test,x@d1.test,2.0.0 (success),"smtp;250 2.0.0 OK",,"8BITMIME,SIZE,PIPELINING",d1.test/default` + "\n" +
		`b,2026-11-28 10:00:01+0000,2026-11-28 09:59:59+0000,a@b.test,y@d1.test,5.1.1 (bad destination mailbox address),"smtp;550 5.1.1 ""no"" user",bad-mailbox,,d1.test/default` + "\n" +
		`t,2026-11-28 10:00:02+0000,2026-11-28` // being written: ignored
	recs, err := ParseAcct(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2: %v", len(recs), recs)
	}
	d, b := recs[0], recs[1]
	if d.Type() != "d" || d["dlvEsmtpAvailable"] != "8BITMIME,SIZE,PIPELINING" || d["queue"] != "d1.test/default" {
		t.Errorf("d record = %v", d)
	}
	if b.Type() != "b" || b["bounceCat"] != "bad-mailbox" || b["dsnDiag"] != `smtp;550 5.1.1 "no" user` {
		t.Errorf("b record = %v", b)
	}
	tl, err := d.Time("timeLogged")
	if err != nil || !tl.Equal(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("timeLogged = %v, %v", tl, err)
	}
	if got := Filter(recs, OfType("b"), ForRcpt("Y@D1.test")); len(got) != 1 {
		t.Errorf("Filter(b, y) = %v", got)
	}
	if got := Filter(recs, FieldIs("bounceCat", "bad-mailbox"), OfType("d")); len(got) != 0 {
		t.Errorf("Filter(bad-mailbox, d) = %v", got)
	}
	if got := Filter(recs); len(got) != 2 {
		t.Errorf("Filter() = %d records", len(got))
	}
}

func TestParseAcctErrors(t *testing.T) {
	cases := []struct{ name, in string }{
		{"field count", acctHeader + "d,1,2\n"},
		{"no type column", "rcpt,type\nx,d\n"},
		{"bad quote", acctHeader + `d,"x` + "\"y,3,4,5,6,7,8,9,10\n"},
	}
	for _, c := range cases {
		if _, err := ParseAcct(strings.NewReader(c.in)); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	for _, in := range []string{"", "type,rcpt", "type,rcpt\n"} { // nothing complete yet
		if recs, err := ParseAcct(strings.NewReader(in)); err != nil || len(recs) != 0 {
			t.Errorf("ParseAcct(%q) = %v, %v", in, recs, err)
		}
	}
}

func TestParseAcctTime(t *testing.T) {
	cases := []struct {
		in   string
		want time.Time
	}{
		{"2026-11-28 10:00:00+0000", time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)},
		{"2026-11-28 10:00:00.250+0000", time.Date(2026, 11, 28, 10, 0, 0, 250e6, time.UTC)},
		{"2026-11-28 11:00:00+0100", time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		got, err := ParseAcctTime(c.in)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseAcctTime(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	if _, err := ParseAcctTime("2026-11-28T10:00:00Z"); err == nil {
		t.Error("RFC 3339 accepted")
	}
}

func TestReadAcctDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("acct-2026-11-29.csv", "type,rcpt\nd,second@x.test\n")
	write("acct-2026-11-28.csv", "type,rcpt\nd,first@x.test\nb,first@x.test\n")
	write("other.csv", "type,rcpt\nd,ignored@x.test\n")
	recs, err := ReadAcctDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Type()+":"+r["rcpt"])
	}
	want := "d:first@x.test b:first@x.test d:second@x.test"
	if strings.Join(got, " ") != want {
		t.Errorf("records = %v, want %s", got, want)
	}
	if recs, err := ReadAcctDir(filepath.Join(dir, "missing")); err != nil || recs != nil {
		t.Errorf("missing dir: %v, %v", recs, err)
	}
}
