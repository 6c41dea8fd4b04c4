package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// mountTmpfs mounts a tmpfs of the given size ("8m") on a new directory,
// unmounted when the test ends. It needs root or password-less sudo; the
// test is skipped without them.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sluice-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) *exec.Cmd {
		if os.Geteuid() == 0 {
			return exec.Command(args[0], args[1:]...)
		}
		return exec.Command("sudo", append([]string{"-n"}, args...)...)
	}
	if out, err := run("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		t.Skipf("cannot mount a tmpfs (needs root or sudo): %v %s", err, out)
	}
	t.Cleanup(func() {
		run("umount", "-l", dir).Run()
		os.Remove(dir)
	})
	return dir
}

// freeBytes returns the space available on dir's filesystem.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// TestFullDisk puts the spool on an 8 MB tmpfs and fills it: the injector
// gets 452 4.3.1 and never a 250 for mail that could not be stored, the
// daemon stays up, service resumes once space returns, and every message
// acknowledged before, during and after is delivered.
func TestFullDisk(t *testing.T) {
	t.Parallel()
	mnt := mountTmpfs(t, "8m")
	spoolDir := filepath.Join(mnt, "spool")
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.102.1:25", testenv.SinkOptions{})
	mxTo(dns, "disk.test", "127.20.102.1")
	cfg := testenv.Config{
		Listen:  listenAddr(t, "127.20.102.254"),
		DNS:     []string{dns.Addr()},
		Domains: map[string]testenv.Domain{"*": {RetryAfter: []string{"1s"}}},
		Extra:   "[spool]\nmin-free-space = \"1m\"\n",
	}
	d := testenv.StartDaemon(t, fmt.Sprintf("spool-dir = %q\n", spoolDir)+cfg.TOML())

	// Leave about 2.5 MB: pebble's WAL grows with every message until its
	// 64 MB memtable is flushed, so it fills that quickly.
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, freeBytes(t, mnt)-5<<19), 0o600); err != nil {
		t.Fatal(err)
	}

	in := testenv.NewInjector(d.Addr())
	defer in.Close()
	var acked []string
	send := func(i int) error {
		rcpt := fmt.Sprintf("u%d@disk.test", i)
		msg := testenv.GenMessage(i, 20<<10, rcpt)
		err := in.Send("sender@e2e.test", []string{rcpt}, msg)
		if err == nil {
			acked = append(acked, testenv.MessageID(msg))
		}
		return err
	}
	var full error
	i := 0
	for ; i < 1000 && full == nil; i++ {
		if err := send(i); err != nil {
			full = err
		}
	}
	code, enh := testenv.ReplyCode(full)
	if code != 452 || enh != "4.3.1" {
		t.Fatalf("after %d messages: %v (code %d %s), want 452 4.3.1", len(acked), full, code, enh)
	}
	t.Logf("%d messages accepted, then %v", len(acked), full)
	for k := 0; k < 5; k++ { // still full: still refused, never 250
		if err := send(i); err == nil {
			t.Fatal("a message was acknowledged while the spool's disk is full")
		} else if c, _ := testenv.ReplyCode(err); c != 452 {
			t.Fatalf("full disk: %v, want 452", err)
		}
		i++
	}
	if !d.Running() {
		t.Fatalf("the daemon died on the full disk:\n%s", d.LogTail(20))
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 5; k++ {
		if err := send(i); err != nil {
			t.Fatalf("after space returned: %v", err)
		}
		i++
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := sink.MessageIDs()
		var missing []string
		for _, id := range acked {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages not delivered, e.g. %s", len(missing), len(acked), missing[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range sink.Messages() {
		if !strings.Contains(string(m.Data), "The quick brown fox") {
			t.Fatalf("message %s damaged:\n%.300s", m.MessageID, m.Data)
		}
	}
}
