package acct

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHeaderValues(t *testing.T) {
	msg := "Received: from x\r\n\tby y\r\n" +
		"subject:   Hello,\r\n \"world\"\r\n\tagain  \r\n" +
		"X-Campaign : spring-2026\r\n" +
		"Subject: second subject\r\n" +
		"X-Empty:\r\n" +
		"\r\n" +
		"X-Campaign: in the body\r\n"
	got := HeaderValues([]byte(msg), []string{"Subject", "X-CAMPAIGN", "X-Empty", "X-Missing"})
	want := map[string]string{"Subject": `Hello, "world"	again`, "X-CAMPAIGN": "spring-2026", "X-Empty": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("HeaderValues = %q, want %q", got, want)
	}
	// LF line endings, and the header section ends at the blank line.
	got = HeaderValues([]byte("A: 1\n\nB: 2\n"), []string{"a", "b"})
	if !reflect.DeepEqual(got, map[string]string{"a": "1"}) {
		t.Errorf("LF: %q", got)
	}
	if got := HeaderValues([]byte("Subject: x\r\n\r\n"), nil); got != nil {
		t.Errorf("no names: %q, want nil", got)
	}
	if got := HeaderValues([]byte("Subject: x\r\n\r\n"), []string{"X-Job"}); got != nil {
		t.Errorf("nothing found: %q, want nil", got)
	}
	long := "Subject: " + strings.Repeat("é", 600) + "\r\n\r\n"
	if v := HeaderValues([]byte(long), []string{"Subject"})["Subject"]; len(v) > MaxHeaderValue || !strings.HasPrefix(v, "éé") || strings.ToValidUTF8(v, "?") != v {
		t.Errorf("long value: %d bytes, valid %v", len(v), strings.ToValidUTF8(v, "?") == v)
	}
}

func TestValidFieldName(t *testing.T) {
	for name, ok := range map[string]bool{"Subject": true, "X-Campaign": true, "x_a.b": true, "": false, "A B": false, "A:B": false, "Subjé": false, "A\tB": false} {
		if ValidFieldName(name) != ok {
			t.Errorf("ValidFieldName(%q) = %v", name, !ok)
		}
	}
}

// TestHeaderColumns: header_* columns follow vmtaPool, in configured order,
// in the header row and every record; values are CSV-quoted as needed and
// found in Headers in any case.
func TestHeaderColumns(t *testing.T) {
	dir := t.TempDir()
	w := open(t, Options{Dir: dir, Now: newClock(day1).now, HeaderFields: []string{"Subject", "X-Campaign"}})
	if got := w.HeaderFields(); !reflect.DeepEqual(got, []string{"Subject", "X-Campaign"}) {
		t.Errorf("HeaderFields() = %q", got)
	}
	w.Write(&Record{Type: "d", TimeLogged: day1, VMTAPool: "pool1", RepSourceIP: "192.0.2.1",
		Headers: map[string]string{"Subject": `Sale, "50%" off`, "x-campaign": "c1\r\nc2"}})
	w.Write(&Record{Type: "b", TimeLogged: day1})
	w.Write(&Record{Type: "f", TimeLogged: day1, Headers: map[string]string{"Subject": strings.Repeat("x", 2000)}})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "acct-2026-11-28.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(string(raw))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows:\n%s", len(rows), raw)
	}
	header := rows[0]
	want := append(Fields()[:vmtaPoolCol+1:vmtaPoolCol+1], "header_Subject", "header_X-Campaign")
	want = append(want, Fields()[vmtaPoolCol+1:]...)
	if !reflect.DeepEqual(header, want) {
		t.Errorf("header row %q", header)
	}
	if header[22] != "vmtaPool" || header[23] != "header_Subject" || header[24] != "header_X-Campaign" || header[25] != "repSourceIp" {
		t.Errorf("columns around vmtaPool: %q", header[21:26])
	}
	d := rows[1]
	if d[22] != "pool1" || d[23] != `Sale, "50%" off` || d[24] != "c1 c2" || d[25] != "192.0.2.1" {
		t.Errorf("d row: %q", d[21:26])
	}
	if !strings.Contains(string(raw), `"Sale, ""50%"" off"`) {
		t.Errorf("value not quoted as CSV:\n%s", raw)
	}
	if b := rows[2]; len(b) != len(header) || b[23] != "" || b[24] != "" {
		t.Errorf("b row without Headers: %q", b)
	}
	if f := rows[3]; len(f[23]) != MaxHeaderValue {
		t.Errorf("long value written with %d bytes, want %d", len(f[23]), MaxHeaderValue)
	}
	recs := read(t, filepath.Join(dir, "acct-2026-11-28.csv"))
	if recs[0]["header_Subject"] != `Sale, "50%" off` || recs[0]["repSourceIp"] != "192.0.2.1" {
		t.Errorf("ReadFile: %v", recs[0])
	}
}

func TestHeaderFieldsInvalid(t *testing.T) {
	for _, names := range [][]string{{"Bad Name"}, {"Subject", "subject"}, {""}} {
		if _, err := Open(Options{Dir: t.TempDir(), HeaderFields: names}, nil); err == nil {
			t.Errorf("Open with %q succeeded", names)
		}
	}
}

// TestHeaderFieldsChanged: a restart within the day with another list of
// header fields moves the day's file aside instead of appending rows that
// do not match its header row; the same list appends.
func TestHeaderFieldsChanged(t *testing.T) {
	dir := t.TempDir()
	clk := newClock(day1)
	write := func(names []string, rcpt string) {
		t.Helper()
		w, err := Open(Options{Dir: dir, Now: clk.now, HeaderFields: names}, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(&Record{Type: "d", Rcpt: rcpt, Headers: map[string]string{"Subject": "s-" + rcpt}})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(nil, "a@x.test")
	clk.set(day1.Add(time.Minute))
	write([]string{"Subject"}, "b@x.test")
	write([]string{"Subject"}, "c@x.test") // same list: appends
	clk.set(day1.Add(2 * time.Minute))
	write(nil, "d@x.test")

	files := acctFiles(t, dir)
	if len(files) != 3 {
		t.Fatalf("files %q, want two moved aside and the current one", files)
	}
	var all []map[string]string
	for _, f := range files {
		all = append(all, read(t, filepath.Join(dir, f))...) // ReadFile checks every row against its header
	}
	got := []string{}
	for _, r := range all {
		got = append(got, r["rcpt"]+"="+r["header_Subject"])
	}
	if want := []string{"a@x.test=", "b@x.test=s-b@x.test", "c@x.test=s-c@x.test", "d@x.test="}; !reflect.DeepEqual(got, want) {
		t.Errorf("records %q, want %q", got, want)
	}

	// A header row cut short by a crash is completed, not moved aside.
	dir2 := t.TempDir()
	full := strings.Join(headerRow([]string{"Subject"}), ",")
	if err := os.WriteFile(filepath.Join(dir2, "acct-2026-11-28.csv"), []byte(full[:40]), 0o640); err != nil {
		t.Fatal(err)
	}
	w := open(t, Options{Dir: dir2, Now: clk.now, HeaderFields: []string{"Subject"}})
	w.Write(&Record{Type: "d", Rcpt: "e@x.test"})
	w.Close()
	if files := acctFiles(t, dir2); len(files) != 1 {
		t.Errorf("files %q after a cut-short header", files)
	}
	if recs := read(t, filepath.Join(dir2, "acct-2026-11-28.csv")); len(recs) != 1 || recs[0]["rcpt"] != "e@x.test" {
		t.Errorf("records %v", recs)
	}
}

// BenchmarkWriteHeaders is BenchmarkWrite with two header columns.
func BenchmarkWriteHeaders(b *testing.B) {
	w, err := Open(Options{Dir: b.TempDir(), HeaderFields: []string{"Subject", "X-Campaign"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	h := map[string]string{"Subject": "Hello", "X-Campaign": "c1"}
	r := &Record{Type: "d", TimeLogged: day1, Rcpt: "a@x.test", Queue: "x.test/v1", Headers: h}
	b.ReportAllocs()
	for b.Loop() {
		w.Write(r)
	}
}
