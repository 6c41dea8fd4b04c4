package acct

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is an injectable time source.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()).UTC() }

var day1 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func open(t *testing.T, o Options) *Writer {
	t.Helper()
	w, err := Open(o, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func read(t *testing.T, path string) []map[string]string {
	t.Helper()
	rows, err := ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	return rows
}

func TestFields(t *testing.T) {
	want := strings.Split("type,timeLogged,timeQueued,orig,rcpt,orcpt,dsnAction,dsnStatus,dsnDiag,dsnMta,bounceCat,srcType,srcMta,dlvType,dlvSourceIp,dlvDestinationIp,dlvEsmtpAvailable,dlvSize,vmta,jobId,envId,queue,vmtaPool,repSourceIp,feedbackType,format,userAgent,reportingMta,reportedDomain,rcvSourceIp,dsnReportingMta,timeFirstAttempt,totalSecondsQueued,dlvTlsProtocol,dlvTlsCipher", ",")
	if got := Fields(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Fields() = %v", got)
	}
	Fields()[0] = "changed"
	if Fields()[0] != "type" {
		t.Fatal("Fields returns shared state")
	}

	dir := t.TempDir()
	w := open(t, Options{Dir: dir, Now: newClock(day1).now})
	w.Write(&Record{Type: "d", TimeLogged: day1})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "acct-2026-11-28.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	if lines[0] != strings.Join(want, ",") {
		t.Errorf("header row %q", lines[0])
	}
	if len(lines) != 3 || lines[2] != "" {
		t.Errorf("file %q: want header, one record, final newline", raw)
	}
}

// TestRoundTrip writes every field and reads it back with ReadFile.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w := open(t, Options{Dir: dir, Now: newClock(day1).now})
	queued := day1.Add(-90*time.Second - 400*time.Millisecond)
	d := &Record{
		Type: "d", TimeLogged: day1, TimeQueued: queued, TimeFirstAttempt: day1.Add(-time.Minute),
		Orig: "s@src.test", Rcpt: "a@d1.test", ORcpt: "rfc822;a@d1.test",
		DSNAction: "relayed", DSNStatus: "2.0.0 (success)", DSNDiag: "smtp;250 2.0.0 OK, queued as \"x\"",
		DSNMta: "mx.d1.test (192.0.2.5)", SrcType: "smtp", SrcMta: "client.test (127.0.0.1)",
		DlvType: "smtp", DlvSourceIP: "127.0.0.2", DlvDestinationIP: "192.0.2.5",
		DlvEsmtpAvailable: "8BITMIME,SIZE,STARTTLS,PIPELINING", DlvSize: 5120,
		VMTA: "vmta1", JobID: "job,42", EnvID: "env1", Queue: "d1.test/vmta1", VMTAPool: "pool1",
		DSNReportingMTA: "mta1.test", DlvTLSProtocol: "TLSv1.3", DlvTLSCipher: "TLS_AES_128_GCM_SHA256",
	}
	b := &Record{
		Type: "b", TimeLogged: day1.Add(time.Second), TimeQueued: day1.Add(time.Hour), // logged before queued: clamped
		Rcpt: "b@d1.test", DSNAction: "failed", DSNStatus: "5.1.1 (bad destination mailbox address)",
		DSNDiag: "smtp;550-5.1.1 first line\r\n550 5.1.1 second line", BounceCat: "bad-mailbox",
	}
	r := &Record{Type: "r", Orig: "s@src.test", Rcpt: "c@d2.test", RcvSourceIP: "127.0.0.9"} // TimeLogged from the clock
	f := &Record{Type: "f", TimeLogged: day1, FeedbackType: "abuse", Format: "arf", UserAgent: "Yahoo!-Mail-Feedback/2.0",
		ReportingMTA: "mta.yahoo.test", ReportedDomain: "src.test", RepSourceIP: "127.0.0.2", DlvSize: 77}
	for _, rec := range []*Record{d, b, r, f} {
		w.Write(rec)
	}
	if !r.TimeLogged.IsZero() {
		t.Error("Write changed the caller's record")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	rows := read(t, Path(dir, day1))
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4", len(rows))
	}
	check := func(row map[string]string, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if row[k] != v {
				t.Errorf("%s: %s = %q, want %q", row["type"], k, row[k], v)
			}
		}
	}
	check(rows[0], map[string]string{
		"type": "d", "timeLogged": "2026-11-28 10:00:00+0000", "timeQueued": "2026-11-28 09:58:29+0000",
		"timeFirstAttempt": "2026-11-28 09:59:00+0000", "totalSecondsQueued": "90",
		"orig": "s@src.test", "rcpt": "a@d1.test", "orcpt": "rfc822;a@d1.test", "dsnAction": "relayed",
		"dsnStatus": "2.0.0 (success)", "dsnDiag": "smtp;250 2.0.0 OK, queued as \"x\"", "dsnMta": "mx.d1.test (192.0.2.5)",
		"bounceCat": "", "srcType": "smtp", "srcMta": "client.test (127.0.0.1)", "dlvType": "smtp",
		"dlvSourceIp": "127.0.0.2", "dlvDestinationIp": "192.0.2.5", "dlvEsmtpAvailable": "8BITMIME,SIZE,STARTTLS,PIPELINING",
		"dlvSize": "5120", "vmta": "vmta1", "jobId": "job,42", "envId": "env1", "queue": "d1.test/vmta1",
		"vmtaPool": "pool1", "dsnReportingMta": "mta1.test", "dlvTlsProtocol": "TLSv1.3", "dlvTlsCipher": "TLS_AES_128_GCM_SHA256",
	})
	check(rows[1], map[string]string{
		"type": "b", "dsnDiag": "smtp;550-5.1.1 first line 550 5.1.1 second line", "bounceCat": "bad-mailbox",
		"dlvSize": "0", "totalSecondsQueued": "0", "timeFirstAttempt": "",
	})
	check(rows[2], map[string]string{
		"type": "r", "timeLogged": "2026-11-28 10:00:00+0000", "timeQueued": "", "dlvSize": "",
		"totalSecondsQueued": "", "rcvSourceIp": "127.0.0.9",
	})
	check(rows[3], map[string]string{
		"type": "f", "feedbackType": "abuse", "format": "arf", "userAgent": "Yahoo!-Mail-Feedback/2.0",
		"reportingMta": "mta.yahoo.test", "reportedDomain": "src.test", "repSourceIp": "127.0.0.2", "dlvSize": "77",
	})
	// Times in other zones are written in UTC.
	w.Write(&Record{Type: "t", TimeLogged: day1.In(time.FixedZone("X", 5*3600))})
	w.Flush()
	if got := read(t, Path(dir, day1))[4]["timeLogged"]; got != "2026-11-28 10:00:00+0000" {
		t.Errorf("zoned time written as %q", got)
	}
}

func TestRecordsFilter(t *testing.T) {
	dir := t.TempDir()
	w := open(t, Options{Dir: dir, Records: []string{"d", " B ", "t"}, Now: newClock(day1).now})
	for _, typ := range []string{"r", "d", "b", "t", "f", "tq", "rb"} {
		w.Write(&Record{Type: typ, TimeLogged: day1})
	}
	w.Write(nil)
	w.Flush()
	var got []string
	for _, row := range read(t, Path(dir, day1)) {
		got = append(got, row["type"])
	}
	if strings.Join(got, ",") != "d,b,t" {
		t.Errorf("written types %v, want d,b,t", got)
	}
}

// TestRotation moves an injected clock over midnight UTC.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	clk := newClock(time.Date(2026, 11, 28, 23, 59, 58, 0, time.UTC))
	w := open(t, Options{Dir: dir, Now: clk.now})
	w.Write(&Record{Type: "d", Rcpt: "1@d.test"}) // clock time
	w.Write(&Record{Type: "d", Rcpt: "2@d.test", TimeLogged: time.Date(2026, 11, 28, 23, 59, 59, 0, time.UTC)})
	clk.set(time.Date(2026, 11, 29, 0, 0, 1, 0, time.UTC))
	w.Write(&Record{Type: "d", Rcpt: "3@d.test"})
	// Logged before midnight, arriving after: stays in the current file.
	w.Write(&Record{Type: "d", Rcpt: "4@d.test", TimeLogged: time.Date(2026, 11, 28, 23, 59, 59, 0, time.UTC)})
	// Midnight in UTC, not in local time.
	w.Write(&Record{Type: "d", Rcpt: "5@d.test", TimeLogged: time.Date(2026, 11, 30, 1, 0, 0, 0, time.FixedZone("CET", 3600))})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"acct-2026-11-28.csv": "1@d.test,2@d.test",
		"acct-2026-11-29.csv": "3@d.test,4@d.test",
		"acct-2026-11-30.csv": "5@d.test",
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != len(want) {
		t.Errorf("files %v", files)
	}
	for name, rcpts := range want {
		var got []string
		for _, row := range read(t, filepath.Join(dir, name)) {
			got = append(got, row["rcpt"])
		}
		if strings.Join(got, ",") != rcpts {
			t.Errorf("%s holds %v, want %s", name, got, rcpts)
		}
	}
}

// TestReopenAppends restarts the writer on an existing file, including one
// whose last line was cut short by a crash.
func TestReopenAppends(t *testing.T) {
	dir := t.TempDir()
	clk := newClock(day1)
	for i := range 2 {
		w := open(t, Options{Dir: dir, Now: clk.now})
		w.Write(&Record{Type: "d", Rcpt: fmt.Sprintf("%d@d.test", i)})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rows := read(t, Path(dir, day1)) // a second header row would show up as a record
	if len(rows) != 2 || rows[0]["rcpt"] != "0@d.test" || rows[1]["rcpt"] != "1@d.test" {
		t.Fatalf("rows %v", rows)
	}

	f, err := os.OpenFile(Path(dir, day1), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("d,2026-11-28 10:00:00+0000,cut sh")
	f.Close()
	w := open(t, Options{Dir: dir, Now: clk.now})
	w.Write(&Record{Type: "d", Rcpt: "after@d.test"})
	w.Close()
	raw, _ := os.ReadFile(Path(dir, day1))
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "d,2026-11-28 10:00:00+0000,,,after@d.test,") {
		t.Errorf("record after a cut line: %q", last)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(Options{}, nil); err == nil {
		t.Error("Open without Dir succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Open(Options{Dir: filepath.Join(file, "sub")}, nil); err == nil {
		t.Error("Open under a regular file succeeded")
	}
}

func TestWriteAfterClose(t *testing.T) {
	dir := t.TempDir()
	w := open(t, Options{Dir: dir, Now: newClock(day1).now})
	w.Close()
	w.Write(&Record{Type: "d"})
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if rows := read(t, Path(dir, day1)); len(rows) != 0 {
		t.Errorf("%d rows written after Close", len(rows))
	}
}

// TestRunFlushes checks that Run writes buffered records without an explicit
// Flush, and stops when its context ends.
func TestRunFlushes(t *testing.T) {
	dir := t.TempDir()
	const interval = 20 * time.Millisecond
	w := open(t, Options{Dir: dir, FlushInterval: interval}) // real clock
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	start := time.Now()
	w.Write(&Record{Type: "d", Rcpt: "a@d.test"})
	path := Path(dir, time.Now())
	for {
		rows, err := ReadFile(path)
		if err == nil && len(rows) == 1 {
			break
		}
		if time.Since(start) > 5*time.Second { // generous: only a hang fails
			t.Fatalf("record not on disk after %v (rows %v, err %v)", time.Since(start), rows, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("record on disk after %v (FlushInterval %v)", time.Since(start), interval)

	// The last records are flushed when Run ends.
	w.Write(&Record{Type: "d", Rcpt: "b@d.test"})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	done <- nil // for the deferred check
	if rows := read(t, path); len(rows) != 2 {
		t.Errorf("%d rows after Run returned, want 2", len(rows))
	}
}

// TestConcurrentWrites runs writers in parallel with Run (use -race) and
// checks that every record comes back whole.
func TestConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	w := open(t, Options{Dir: dir, Now: newClock(day1).now, FlushInterval: 2 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { w.Run(ctx) })

	const writers, each = 8, 250
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				w.Write(&Record{
					Type: "d", Rcpt: fmt.Sprintf("%d-%d@d.test", g, i),
					DSNDiag: fmt.Sprintf("smtp;250 2.0.0 \"ok\", id=%d,%d\nsecond line", g, i), DlvSize: int64(i),
				})
			}
		})
	}
	wg.Wait()
	cancel()
	run.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rows := read(t, Path(dir, day1))
	if len(rows) != writers*each {
		t.Fatalf("%d rows, want %d", len(rows), writers*each)
	}
	seen := map[string]bool{}
	for _, row := range rows {
		var g, i int
		if _, err := fmt.Sscanf(row["rcpt"], "%d-%d@d.test", &g, &i); err != nil {
			t.Fatalf("bad rcpt %q", row["rcpt"])
		}
		if want := fmt.Sprintf("smtp;250 2.0.0 \"ok\", id=%d,%d second line", g, i); row["dsnDiag"] != want || row["dlvSize"] != fmt.Sprint(i) {
			t.Fatalf("row mixed up: %v", row)
		}
		seen[row["rcpt"]] = true
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct records, want %d", len(seen), writers*each)
	}
}

func BenchmarkWrite(b *testing.B) {
	w, err := Open(Options{Dir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	rec := &Record{
		Type: "d", TimeLogged: time.Now(), TimeQueued: time.Now().Add(-time.Second),
		Orig: "bounce-123@src.example", Rcpt: "someone@gmail.com", DSNAction: "relayed",
		DSNStatus: "2.0.0 (success)", DSNDiag: "smtp;250 2.0.0 OK 1700000000 abc123.456 - gsmtp",
		DSNMta: "gmail-smtp-in.l.google.com (142.250.1.27)", SrcType: "smtp", DlvType: "smtp",
		DlvSourceIP: "203.0.113.10", DlvDestinationIP: "142.250.1.27",
		DlvEsmtpAvailable: "8BITMIME,SIZE,STARTTLS,PIPELINING,ENHANCEDSTATUSCODES", DlvSize: 5120,
		VMTA: "vmta1", JobID: "job-42", Queue: "gmail.com/vmta1", VMTAPool: "pool1",
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			w.Write(rec)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				w.Write(rec)
			}
		})
	})
}

// TestRotationFailureRecovers makes the next day's file impossible to
// create, then possible again: records wait in the buffer meanwhile.
func TestRotationFailureRecovers(t *testing.T) {
	dir := t.TempDir()
	clk := newClock(day1)
	w := open(t, Options{Dir: dir, Now: clk.now})
	day2 := day1.Add(24 * time.Hour)
	if err := os.Mkdir(Path(dir, day2), 0o700); err != nil { // a directory where the file should go
		t.Fatal(err)
	}
	w.Write(&Record{Type: "d", Rcpt: "1@d.test", TimeLogged: day2})
	if err := w.Flush(); err == nil {
		t.Fatal("Flush succeeded with the file blocked")
	}
	w.Write(&Record{Type: "d", Rcpt: "2@d.test", TimeLogged: day2})
	os.Remove(Path(dir, day2))
	if err := w.Flush(); err != nil {
		t.Fatalf("Flush after the way was cleared: %v", err)
	}
	rows := read(t, Path(dir, day2))
	if len(rows) != 2 || rows[0]["rcpt"] != "1@d.test" || rows[1]["rcpt"] != "2@d.test" {
		t.Errorf("rows %v", rows)
	}
}

func TestObserveSeesEveryRecord(t *testing.T) {
	w, err := Open(Options{Dir: t.TempDir(), Records: []string{"d"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var seen []string
	w.Observe(func(r *Record) { seen = append(seen, r.Type+":"+r.Rcpt) })
	w.Write(&Record{Type: "d", Rcpt: "a@x.test"})
	w.Write(&Record{Type: "b", Rcpt: "b@x.test"}) // not kept in the file, still observed
	if got := strings.Join(seen, ","); got != "d:a@x.test,b:b@x.test" {
		t.Fatalf("observed %q", got)
	}
}
