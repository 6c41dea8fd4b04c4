package acct

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"
)

// acctFiles lists dir's acct-*.csv names, sorted as readers sort them.
func acctFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "acct-*.csv"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// readAll reads every acct file of dir in sorted order and returns the rcpt
// column of each record.
func readAll(t *testing.T, dir string) []string {
	t.Helper()
	var rcpts []string
	for _, name := range acctFiles(t, dir) {
		for _, r := range read(t, filepath.Join(dir, name)) {
			rcpts = append(rcpts, r["rcpt"])
		}
	}
	return rcpts
}

func TestMaxSizeMovesFileAside(t *testing.T) {
	dir := t.TempDir()
	clk := newClock(day1)
	w := open(t, Options{Dir: dir, Now: clk.now, MaxSize: 4096})
	var want []string
	for i := range 200 {
		clk.set(day1.Add(time.Duration(i) * 10 * time.Millisecond))
		rcpt := fmt.Sprintf("user%03d@example.test", i)
		want = append(want, rcpt)
		w.Write(&Record{Type: "d", Rcpt: rcpt, DSNDiag: "smtp;250 2.0.0 queued as 0123456789"})
		if i%10 == 9 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := acctFiles(t, dir)
	if len(files) < 4 {
		t.Fatalf("files %v: want several, the file was to be moved every 4 KiB", files)
	}
	if last := files[len(files)-1]; last != "acct-2026-11-28.csv" {
		t.Errorf("last file %q, want the current day's name", last)
	}
	for _, name := range files[:len(files)-1] {
		if !acctName.MatchString(name) || len(name) != len("acct-2026-11-28-100000.000.csv") {
			t.Errorf("moved file %q does not have the moved-file name", name)
		}
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() < 4096 || st.Size() > 4096+1500 {
			t.Errorf("%s: %d bytes, want about max-size", name, st.Size())
		}
	}
	if got := readAll(t, dir); !slices.Equal(got, want) {
		t.Errorf("records read back in name order: %d, want %d in the order written", len(got), len(want))
	}
}

func TestMoveInterval(t *testing.T) {
	dir := t.TempDir()
	clk := newClock(day1.Add(30 * time.Minute)) // 10:30
	w := open(t, Options{Dir: dir, Now: clk.now, MoveInterval: time.Hour})

	w.Write(&Record{Type: "d", Rcpt: "a@x.test"})
	clk.set(day1.Add(59 * time.Minute)) // 10:59: not yet
	w.moveIfDue()
	if files := acctFiles(t, dir); len(files) != 1 {
		t.Fatalf("files %v before the hour", files)
	}
	clk.set(day1.Add(time.Hour + 2*time.Second)) // 11:00:02
	w.moveIfDue()
	want := []string{"acct-2026-11-28-110002.000.csv", "acct-2026-11-28.csv"}
	if files := acctFiles(t, dir); !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}

	// An hour without records moves nothing.
	clk.set(day1.Add(2*time.Hour + time.Second))
	w.moveIfDue()
	if files := acctFiles(t, dir); !slices.Equal(files, want) {
		t.Fatalf("files %v after an empty hour, want %v", files, want)
	}

	// Records again, then midnight: the day's file keeps its name and the
	// next day's file starts.
	w.Write(&Record{Type: "b", Rcpt: "b@x.test"})
	clk.set(time.Date(2026, 11, 29, 0, 0, 1, 0, time.UTC))
	w.moveIfDue()
	w.Write(&Record{Type: "d", Rcpt: "c@x.test"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want = []string{"acct-2026-11-28-110002.000.csv", "acct-2026-11-28.csv", "acct-2026-11-29.csv"}
	if files := acctFiles(t, dir); !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	if got := readAll(t, dir); !slices.Equal(got, []string{"a@x.test", "b@x.test", "c@x.test"}) {
		t.Errorf("records %v", got)
	}
}

func TestReopenKeepsAppending(t *testing.T) {
	dir := t.TempDir()
	clk := newClock(day1)
	w := open(t, Options{Dir: dir, Now: clk.now, MoveInterval: time.Hour})
	w.Write(&Record{Type: "d", Rcpt: "a@x.test"})
	w.Close()
	// A restart within the hour appends to the same file, and the move at
	// the hour takes the records of both runs.
	w2 := open(t, Options{Dir: dir, Now: clk.now, MoveInterval: time.Hour})
	clk.set(day1.Add(time.Hour))
	w2.moveIfDue()
	w2.Close()
	want := []string{"acct-2026-11-28-110000.000.csv", "acct-2026-11-28.csv"}
	if files := acctFiles(t, dir); !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	if rows := read(t, filepath.Join(dir, want[0])); len(rows) != 1 {
		t.Errorf("moved file has %d records, want 1", len(rows))
	}
}

func TestDeleteAfter(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	old := now.Add(-49 * time.Hour)
	mk := func(name string, mtime time.Time) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("type\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	mk("acct-2026-11-01.csv", old)
	mk("acct-2026-11-02-120000.000.csv", old)
	mk("acct-2026-11-03.csv", now.Add(-47*time.Hour)) // young enough
	mk("acct-notes.csv", old)                         // not ours
	mk("other.csv", old)
	w := open(t, Options{Dir: dir, DeleteAfter: 48 * time.Hour})
	cur := filepath.Base(Path(dir, now))
	os.Chtimes(filepath.Join(dir, cur), old, old) // the file being written is never deleted

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err1 := os.Stat(filepath.Join(dir, "acct-2026-11-01.csv"))
		_, err2 := os.Stat(filepath.Join(dir, "acct-2026-11-02-120000.000.csv"))
		if os.IsNotExist(err1) && os.IsNotExist(err2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not delete the expired files")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []string{"acct-2026-11-03.csv", "acct-notes.csv", cur, "other.csv"}
	sort.Strings(want)
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
}
