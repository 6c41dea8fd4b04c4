package spool

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// mountTmpfs mounts a tmpfs of size (e.g. "4m") on a new directory and
// unmounts it when the test ends. Mounting needs root (or password-less
// sudo); without it the test is skipped.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", dir}
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command(args[0], args[1:]...)
	} else {
		cmd = exec.Command("sudo", append([]string{"-n"}, args...)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		um := exec.Command("umount", dir)
		if os.Geteuid() != 0 {
			um = exec.Command("sudo", "-n", "umount", dir)
		}
		um.Run()
	})
	return dir
}

// TestPutDiskFull fills a small filesystem: Put fails with an error that
// wraps ENOSPC (the listener answers 452 4.3.1), never reports success for
// a message it could not store, and works again once space returns; what
// was stored before is intact.
func TestPutDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	opts := Options{MinFreeBytes: 512 << 10}
	s, err := OpenWith(filepath.Join(dir, "spool"), nil, opts)
	must(t, err, "Open")
	ballast := filepath.Join(dir, "ballast")
	// Leave little room: the WAL grows into the rest.
	b := make([]byte, 2<<20)
	must(t, os.WriteFile(ballast, b, 0o600), "ballast")

	// Random bytes: the spool compresses bodies, and these stay 64 KiB.
	body := make([]byte, 64<<10)
	rand.Read(body)
	body[0] = 'y' // a body never starts with NUL
	var stored []string
	var putErr error
	for i := 0; i < 200; i++ {
		id := s.NewID()
		if putErr = s.Put(context.Background(), sample(id, 1), body); putErr != nil {
			break
		}
		stored = append(stored, id)
	}
	if putErr == nil {
		t.Fatal("200 puts of 64 KiB fit in a 4 MiB filesystem")
	}
	if !errors.Is(putErr, syscall.ENOSPC) || !errors.Is(putErr, ErrDiskFull) {
		t.Fatalf("Put on a full disk: %v, want an error wrapping ENOSPC", putErr)
	}
	t.Logf("%d messages stored, then: %v", len(stored), putErr)

	must(t, os.Remove(ballast), "free space")
	id := s.NewID()
	if err := s.Put(context.Background(), sample(id, 1), body); err != nil {
		t.Fatalf("Put after space returned: %v", err)
	}
	stored = append(stored, id)
	for _, id := range stored {
		got, err := s.Body(id)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("Body(%s) after the full disk: %d bytes, %v", id, len(got), err)
		}
	}
	must(t, s.Close(), "Close")
	s, err = OpenWith(filepath.Join(dir, "spool"), nil, opts)
	must(t, err, "reopen")
	defer s.Close()
	msgs, _ := scanAll(t, s)
	for _, id := range stored {
		if msgs[id] == nil {
			t.Errorf("message %s acknowledged before or after the full disk is not recovered", id)
		}
	}
}
