package testenv

import (
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// StartRedis runs redis-server on 127.0.0.1 and a free port, without
// persistence, until the test ends, and returns its "ip:port". Without
// redis-server the test is skipped, or fails when CI is set.
func StartRedis(tb testing.TB) string {
	tb.Helper()
	bin := RequireTool(tb, "redis-server", "/usr/bin/redis-server")
	port := FreePort(tb, "127.0.0.1")
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", tb.TempDir())
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	// Owned by this helper: ends when the cleanup kills the process.
	go func() {
		cmd.Wait()
		close(done)
	}()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	if err := waitListening(addr, 5*time.Second, done); err != nil {
		tb.Fatalf("redis-server: %v", err)
	}
	return addr
}
