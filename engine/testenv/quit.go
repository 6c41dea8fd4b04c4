package testenv

import (
	"bytes"
	"net"
	"sync"
)

// quitListener marks, on each connection, the moment the client sends
// QUIT. go-smtp answers 221 before it ends the session, so a client can
// already open its next connection while the old session still counts:
// counting a session as over at its QUIT keeps MaxConcurrent to what the
// client really holds. (A body line "QUIT" would end the count early; test
// messages carry none.)
type quitListener struct{ net.Listener }

func (l quitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &quitConn{Conn: c}, nil
}

type quitConn struct {
	net.Conn
	mu     sync.Mutex
	onQuit func()
	tail   []byte // the end of the last read, for a QUIT split across reads
}

func (c *quitConn) setOnQuit(f func()) {
	c.mu.Lock()
	c.onQuit = f
	c.mu.Unlock()
}

func (c *quitConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		buf := append(c.tail, p[:n]...)
		if (bytes.HasPrefix(bytes.ToUpper(buf), []byte("QUIT\r\n")) || bytes.Contains(bytes.ToUpper(buf), []byte("\nQUIT\r\n"))) && c.onQuit != nil {
			c.onQuit()
		}
		if len(buf) > 6 {
			buf = buf[len(buf)-6:]
		}
		c.tail = append(c.tail[:0], buf...)
		c.mu.Unlock()
	}
	return n, err
}
