package spool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashDirEnv = "SLUICE_SPOOL_CRASH_DIR"

// crashBody is the body the child stores for id, so the parent can check it.
func crashBody(id string) []byte { return bytes.Repeat([]byte(id+"\r\n"), 100) }

// TestCrashChild is the child half of TestCrashKill9. It Puts messages from
// several goroutines and prints "ACK <id>" the moment each Put returns nil,
// until it is killed (or gives up after a while, should the parent be gone).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child process of TestCrashKill9 only")
	}
	s, err := Open(dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stdout, "OPENERR", err)
		os.Exit(3)
	}
	deadline := time.Now().Add(30 * time.Second)
	var out sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				m := sample(s.NewID(), 2)
				if err := s.Put(context.Background(), m, crashBody(m.ID)); err != nil {
					fmt.Fprintln(os.Stdout, "PUTERR", err)
					os.Exit(3)
				}
				out.Lock()
				os.Stdout.Write([]byte("ACK " + m.ID + "\n")) // one write: a whole line or nothing
				out.Unlock()
			}
		})
	}
	wg.Wait()
	os.Exit(4) // not killed in time
}

// TestCrashKill9 SIGKILLs a child process that is writing to the spool, then
// checks that every message the child had acknowledged is in the spool,
// intact. It does so for several rounds on the same directory, so recovery
// after a crash is itself crashed into.
func TestCrashKill9(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	acked := map[string]bool{}
	for round, killAfter := range []int{150, 37, 400} {
		got := runAndKill(t, dir, killAfter)
		for _, id := range got {
			acked[id] = true
		}
		s := open(t, dir)
		found, _ := scanAll(t, s)
		for id := range acked {
			if found[id] == nil {
				t.Errorf("round %d: acknowledged message %s lost", round, id)
				continue
			}
			b, err := s.Body(id)
			if err != nil || !bytes.Equal(b, crashBody(id)) {
				t.Errorf("round %d: %s body damaged (%d bytes, %v)", round, id, len(b), err)
			}
			if n := len(found[id].Rcpts); n != 2 {
				t.Errorf("round %d: %s has %d recipients, want 2", round, id, n)
			}
		}
		must(t, s.Close(), "Close")
		t.Logf("round %d: %d acknowledged so far, %d in spool", round, len(acked), len(found))
		if t.Failed() {
			return
		}
	}
}

// runAndKill starts the child on dir, SIGKILLs it once it has acknowledged
// killAfter messages and returns every ID it acknowledged before dying.
func runAndKill(t *testing.T, dir string, killAfter int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	must(t, err, "StdoutPipe")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	must(t, cmd.Start(), "start child")
	watchdog := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()

	var ids []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		id, ok := strings.CutPrefix(line, "ACK ")
		if !ok || len(id) != idLen {
			t.Errorf("child said %q", line)
			continue
		}
		ids = append(ids, id)
		if len(ids) == killAfter {
			must(t, cmd.Process.Signal(syscall.SIGKILL), "kill child")
		}
		// Keep reading: lines already in the pipe were acknowledged too.
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\nstderr: %s", err, stderr.Bytes())
	}
	if len(ids) < killAfter {
		t.Fatalf("child acknowledged only %d messages\nstderr: %s", len(ids), stderr.Bytes())
	}
	return ids
}
