package listener

import (
	"bytes"
	"net"
	"os"
	"sync"
	"time"
)

// slowLineBytes is how much a client may send without a line feed before
// the line guard stops applying: a client sending that much is not a
// slowloris (a binary BDAT chunk has no line structure).
const slowLineBytes = 64 << 10

// lineGuard bounds the time a client may take to send one line, command or
// DATA, by the listener's command-timeout (RFC 5321 §4.5.3.2.7). The SMTP
// engine renews its read deadline before every read, so a client trickling
// one byte a second (slowloris) would otherwise hold a session for ever.
// Reads past the line's deadline fail with os.ErrDeadlineExceeded, which
// the engine answers like any read timeout (421 and close).
type lineGuard struct {
	net.Conn
	timeout time.Duration

	mu        sync.Mutex
	lineStart time.Time // when the current line began (the last LF seen)
	lineBytes int       // bytes since then
	deadline  time.Time // what the engine asked for
}

func newLineGuard(c net.Conn, timeout time.Duration) *lineGuard {
	return &lineGuard{Conn: c, timeout: timeout, lineStart: time.Now()}
}

// SetReadDeadline records the engine's deadline; Read applies the earlier
// of it and the line's.
func (g *lineGuard) SetReadDeadline(t time.Time) error {
	g.mu.Lock()
	g.deadline = t
	d := g.effective()
	g.mu.Unlock()
	return g.Conn.SetReadDeadline(d)
}

// SetDeadline sets both; the read side goes through SetReadDeadline.
func (g *lineGuard) SetDeadline(t time.Time) error {
	if err := g.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return g.SetReadDeadline(t)
}

// effective is the read deadline to apply; g.mu is held.
func (g *lineGuard) effective() time.Time {
	if g.lineBytes >= slowLineBytes {
		return g.deadline
	}
	line := g.lineStart.Add(g.timeout)
	if g.deadline.IsZero() || line.Before(g.deadline) {
		return line
	}
	return g.deadline
}

func (g *lineGuard) Read(p []byte) (int, error) {
	g.mu.Lock()
	if g.lineBytes < slowLineBytes && time.Since(g.lineStart) > g.timeout {
		g.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	d := g.effective()
	g.mu.Unlock()
	g.Conn.SetReadDeadline(d)
	n, err := g.Conn.Read(p)
	if n > 0 {
		g.mu.Lock()
		if i := bytes.LastIndexByte(p[:n], '\n'); i >= 0 {
			g.lineStart, g.lineBytes = time.Now(), n-i-1
		} else {
			g.lineBytes += n
		}
		g.mu.Unlock()
	}
	return n, err
}

// Write sends a reply; with no partial line pending, the client's time for
// its next line starts now, so the server's own processing (a synced spool
// write, an AUTH failure delay) is not charged to it.
func (g *lineGuard) Write(p []byte) (int, error) {
	g.mu.Lock()
	if g.lineBytes == 0 {
		g.lineStart = time.Now()
	}
	g.mu.Unlock()
	return g.Conn.Write(p)
}
