package testenv

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// FreePort returns a TCP port that was free on ip a moment ago (the kernel
// picks it; it is released before returning, so a race is possible but
// unlikely).
func FreePort(tb testing.TB, ip string) int {
	tb.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		tb.Fatalf("free port on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "ip:port" with a port from FreePort.
func FreeAddr(tb testing.TB, ip string) string {
	tb.Helper()
	return net.JoinHostPort(ip, strconv.Itoa(FreePort(tb, ip)))
}

// WaitListening polls addr until it accepts a TCP connection, failing tb
// after timeout.
func WaitListening(tb testing.TB, addr string, timeout time.Duration) {
	tb.Helper()
	if err := waitListening(addr, timeout, nil); err != nil {
		tb.Fatalf("%v", err)
	}
}

// waitListening polls addr; it gives up early when abort is closed.
func waitListening(addr string, timeout time.Duration, abort <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return &waitError{addr: addr, timeout: timeout, err: err}
		}
		select {
		case <-abort:
			return &waitError{addr: addr, err: errExited}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type waitError struct {
	addr    string
	timeout time.Duration
	err     error
}

func (e *waitError) Error() string {
	if e.err == errExited {
		return "process exited before " + e.addr + " accepted connections"
	}
	return e.addr + " not accepting connections after " + e.timeout.String() + ": " + e.err.Error()
}

func (e *waitError) Unwrap() error { return e.err }

// errExited marks a wait abandoned because the process went away.
var errExited = &exitedError{}

type exitedError struct{}

func (*exitedError) Error() string { return "process exited" }
