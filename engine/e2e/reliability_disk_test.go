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
// unmounted when the test ends. It needs root or password-less sudo (and a
// machine that lets root mount); it returns "" when it cannot mount, or
// when SLUICE_TEST_NO_MOUNT is set (to exercise the fallback).
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
	if os.Getenv("SLUICE_TEST_NO_MOUNT") != "" {
		os.Remove(dir)
		return ""
	}
	if out, err := run("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		t.Logf("cannot mount a tmpfs (needs root or sudo): %v %s", err, out)
		return ""
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
	// The spool's filesystem, its reserve, and how to fill and free it.
	var (
		spoolDir, minFree string
		fill              func()
		ballast           string
	)
	if mnt := mountTmpfs(t, "8m"); mnt != "" {
		spoolDir, minFree = filepath.Join(mnt, "spool"), "1m"
		// Leave about 2.5 MB: pebble's WAL grows with every message until
		// its 64 MB memtable is flushed, so it fills that quickly.
		ballast = filepath.Join(mnt, "ballast")
		fill = func() {
			if err := os.WriteFile(ballast, make([]byte, freeBytes(t, mnt)-5<<19), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		// No tmpfs: the spool stays on the temporary filesystem with its
		// reserve 2 GiB under what is free now, and a 4 GiB preallocated
		// file takes the filesystem under the reserve. The margins dwarf
		// what the other tests write meanwhile.
		dir := t.TempDir()
		spoolDir = filepath.Join(dir, "spool")
		free := freeBytes(t, dir)
		if free < 6<<30 {
			t.Skipf("no tmpfs and only %d MB free: cannot fill the disk safely", free>>20)
		}
		minFree = fmt.Sprintf("%dm", (free-2<<30)>>20)
		ballast = filepath.Join(dir, "ballast")
		fill = func() {
			f, err := os.Create(ballast)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := syscall.Fallocate(int(f.Fd()), 0, 0, 4<<30); err != nil {
				t.Skipf("cannot preallocate the ballast: %v", err)
			}
		}
		t.Cleanup(func() { os.Remove(ballast) })
		t.Logf("no tmpfs: spool on %s with min-free-space %s", dir, minFree)
	}
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.102.1:25", testenv.SinkOptions{})
	mxTo(dns, "disk.test", "127.20.102.1")
	cfg := testenv.Config{
		Listen:  listenAddr(t, "127.20.102.254"),
		DNS:     []string{dns.Addr()},
		Domains: map[string]testenv.Domain{"*": {RetryAfter: []string{"1s"}}},
		Extra:   fmt.Sprintf("[spool]\nmin-free-space = %q\n", minFree),
	}
	d := testenv.StartDaemon(t, fmt.Sprintf("spool-dir = %q\n", spoolDir)+cfg.TOML())

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
	i := 0
	for ; i < 3; i++ { // some mail is queued before the disk fills
		if err := send(i); err != nil {
			t.Fatalf("before the disk filled: %v", err)
		}
	}
	fill()
	var full error
	// Bodies are stored compressed (about 10:1 for these): it takes ~1,000.
	for ; i < 20000 && full == nil; i++ {
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
