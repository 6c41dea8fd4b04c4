package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// PostfixSink is a running Postfix smtp-sink that dumps each transaction to
// a file, so messages can be counted by Message-ID.
type PostfixSink struct {
	Addr string
	Dir  string // one file per transaction
	cmd  *exec.Cmd
	done chan struct{}
}

// StartSMTPSink runs `smtp-sink -u root -d DIR/m. ADDR 256` (Postfix's fast
// test receiver, which advertises PIPELINING) until the test ends. Without
// smtp-sink installed the test is skipped, or fails when CI is set.
func StartSMTPSink(tb testing.TB, addr string, extraArgs ...string) *PostfixSink {
	tb.Helper()
	bin := RequireTool(tb, "smtp-sink", "/usr/sbin/smtp-sink", "/usr/lib/postfix/smtp-sink")
	dir := tb.TempDir()
	args := append([]string{"-u", "root", "-d", filepath.Join(dir, "m.")}, extraArgs...)
	args = append(args, addr, "256")
	cmd := exec.Command(bin, args...)
	out, err := os.Create(filepath.Join(tb.TempDir(), "smtp-sink.log"))
	if err != nil {
		tb.Fatalf("smtp-sink log: %v", err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start smtp-sink: %v", err)
	}
	p := &PostfixSink{Addr: addr, Dir: dir, cmd: cmd, done: make(chan struct{})}
	// Owned by the PostfixSink: ends when the process is killed at cleanup.
	go func() {
		cmd.Wait()
		out.Close()
		close(p.done)
	}()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	if err := waitListening(addr, 5*time.Second, p.done); err != nil {
		data, _ := os.ReadFile(out.Name())
		tb.Fatalf("smtp-sink on %s: %v\n%s", addr, err, data)
	}
	return p
}

// MessageIDs counts dumped transactions by Message-ID header; transactions
// without one (aborted ones) are left out.
func (p *PostfixSink) MessageIDs() map[string]int {
	files, _ := filepath.Glob(filepath.Join(p.Dir, "m.*"))
	m := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if id := MessageID(data); id != "" {
			m[id]++
		}
	}
	return m
}

// Count returns the number of dumped messages having a Message-ID.
func (p *PostfixSink) Count() int {
	n := 0
	for _, c := range p.MessageIDs() {
		n += c
	}
	return n
}

// WaitCount waits until at least n messages were dumped; it fails tb after
// timeout.
func (p *PostfixSink) WaitCount(tb testing.TB, n int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for p.Count() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("smtp-sink %s: %d of %d messages after %v", p.Addr, p.Count(), n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
