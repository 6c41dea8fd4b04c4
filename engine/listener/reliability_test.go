package listener

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

func TestAuthLimiter(t *testing.T) {
	a := newAuthLimiter()
	ip, other := netip.MustParseAddr("127.45.0.1"), netip.MustParseAddr("127.45.0.2")
	t0 := time.Unix(1_700_000_000, 0)
	for i := 1; i <= authMaxFailures; i++ {
		if a.blocked(ip, t0) {
			t.Fatalf("blocked after %d failures", i-1)
		}
		if got := a.fail(ip, t0.Add(time.Duration(i)*time.Second)); got != (i == authMaxFailures) {
			t.Fatalf("failure %d: blocked = %v", i, got)
		}
	}
	if !a.blocked(ip, t0.Add(10*time.Second)) || a.blocked(other, t0.Add(10*time.Second)) {
		t.Fatal("the limit is per address")
	}
	if a.blocked(ip, t0.Add(authWindow+2*time.Second)) {
		t.Fatal("still blocked after the window")
	}
}

// pair returns both ends of a loopback TCP connection, the server's end
// wrapped as the listener wraps it.
func pair(t *testing.T, timeout time.Duration) (client net.Conn, server *lineGuard) {
	t.Helper()
	l, err := net.Listen("tcp", "127.45.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); s.Close() })
	return client, newLineGuard(s, timeout)
}

// TestLineGuardSlowloris: a client trickling a line byte by byte is cut
// off once the line has taken longer than the timeout, although each read
// returns quickly; a client sending whole lines is not.
func TestLineGuardSlowloris(t *testing.T) {
	c, g := pair(t, 300*time.Millisecond)
	go func() { // owned here: ends when the guard's side closes
		for _, b := range []byte("EHLO slow.test\r\n") {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	buf := make([]byte, 64)
	start := time.Now()
	var err error
	for err == nil {
		g.SetReadDeadline(time.Now().Add(time.Minute)) // what the SMTP engine does
		_, err = g.Read(buf)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("slowloris read: %v, want a deadline error", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("cut after %v, want about 300ms", took)
	}

	c2, g2 := pair(t, time.Second)
	for i := 0; i < 5; i++ {
		c2.Write([]byte("NOOP\r\n"))
		g2.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := g2.Read(buf); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		g2.Write([]byte("250 ok\r\n"))
		time.Sleep(300 * time.Millisecond) // less than the timeout per line, more in total
	}
}
