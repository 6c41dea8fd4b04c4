package suppress

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestCSVRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := []Entry{
		{Addr: "a@b.test", Reason: Complaint, Added: t0, Note: "feedback, \"quoted\"\nsecond line"},
		{Addr: "@c.test", Scope: "tenant", Reason: HardBounce, Added: t0.Add(123 * time.Millisecond), Expires: t0.Add(24 * time.Hour)},
	}
	var buf bytes.Buffer
	must(t, ExportCSV(&buf, in), "export")
	want := "addr,scope,reason,added,expires,note\n" +
		"a@b.test,,complaint,2026-01-02T03:04:05Z,,\"feedback, \"\"quoted\"\"\nsecond line\"\n" +
		"@c.test,tenant,hard-bounce,2026-01-02T03:04:05.123Z,2026-01-03T03:04:05Z,\n"
	if buf.String() != want {
		t.Errorf("export:\n%s\nwant:\n%s", buf.String(), want)
	}
	out, err := ImportCSV(&buf)
	must(t, err, "import")
	if len(out) != 2 {
		t.Fatalf("imported %d entries", len(out))
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.Addr != b.Addr || a.Scope != b.Scope || a.Reason != b.Reason || !a.Added.Equal(b.Added) || !a.Expires.Equal(b.Expires) || a.Note != b.Note {
			t.Errorf("entry %d: got %+v, want %+v", i, b, a)
		}
	}
	buf.Reset()
	must(t, ExportCSV(&buf, nil), "export nothing")
	if buf.String() != "addr,scope,reason,added,expires,note\n" {
		t.Errorf("empty export = %q", buf.String())
	}
}

func TestImportCSV(t *testing.T) {
	in := "Bob@Example.COM\n" + // no header, address only: manual, no times
		"@dom.test,t1,unsubscribe\n" +
		"c@d.test,,complaint,2026-01-02T03:04:05+02:00,2027-01-01T00:00:00Z,note\n"
	out, err := ImportCSV(strings.NewReader(in))
	must(t, err, "import")
	if len(out) != 3 {
		t.Fatalf("got %d entries", len(out))
	}
	if e := out[0]; e.Addr != "bob@example.com" || e.Reason != Manual || !e.Added.IsZero() || e.Scope != "" {
		t.Errorf("first = %+v", e)
	}
	if e := out[1]; e.Addr != "@dom.test" || e.Scope != "t1" || e.Reason != Unsubscribe {
		t.Errorf("second = %+v", e)
	}
	if e := out[2]; !e.Added.Equal(time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC)) || e.Note != "note" || e.Expires.Year() != 2027 {
		t.Errorf("third = %+v", e)
	}
}

func TestImportCSVErrors(t *testing.T) {
	head := "addr,scope,reason,added,expires,note\nok@a.test\n"
	cases := []struct{ in, want string }{
		{head + "nodomain\n", "line 3"},
		{head + "a@b.test,,spam\n", `line 3: suppress: invalid entry: unknown reason "spam"`},
		{head + "a@b.test,bad scope\n", "line 3"},
		{head + "a@b.test,,manual,yesterday\n", `line 3: added: not an RFC 3339 time: "yesterday"`},
		{head + "a@b.test,,manual,,2026-13-01T00:00:00Z\n", "line 3: expires"},
		{head + "a@b.test,,manual,,,note,extra\n", "line 3: 7 fields"},
		{head + "\"a@b.test,unterminated\n", "csv"},
		{head + strings.Repeat("x", 5000) + "@a.test\n", "longer than 4096"},
		{"ok@a.test\nok2@a.test\n\n\nbad\n", "line 5"},
	}
	for _, c := range cases {
		_, err := ImportCSV(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ImportCSV(%.40q) = %v, want an error with %q", c.in, err, c.want)
		}
	}
}

func TestExportStore(t *testing.T) {
	ctx := context.Background()
	l, err := NewLocal(NewMemKV())
	must(t, err, "NewLocal")
	defer l.Close()
	must(t, l.Add(ctx, Entry{Addr: "a@b.test", Scope: "t", Reason: Complaint}), "add")
	must(t, l.Add(ctx, Entry{Addr: "c@d.test", Reason: Manual}), "add")
	var buf bytes.Buffer
	must(t, Export(ctx, l, AllScopes, &buf), "export")
	got, err := ImportCSV(&buf)
	must(t, err, "import")
	if len(got) != 2 {
		t.Fatalf("round trip through a store: %d entries", len(got))
	}
	// Import into a second store.
	l2, err := NewLocal(NewMemKV())
	must(t, err, "NewLocal")
	defer l2.Close()
	for _, e := range got {
		must(t, l2.Add(ctx, e), "add imported")
	}
	if _, ok, _ := l2.IsSuppressed(ctx, "t", "a@b.test"); !ok {
		t.Errorf("imported entry not suppressed")
	}
}
