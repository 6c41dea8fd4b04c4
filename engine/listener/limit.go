package listener

import (
	"net"
	"sync"
	"time"
)

// limitListener admits at most max concurrent connections; the others get
// 421 4.3.2 (RFC 5321 §3.8, RFC 3463 "system not accepting network
// messages") and are closed at once.
type limitListener struct {
	net.Listener
	max      int
	hostname string
	mu       sync.Mutex
	active   int
}

func newLimitListener(ln net.Listener, max int, hostname string) *limitListener {
	if max <= 0 {
		max = 200
	}
	return &limitListener{Listener: ln, max: max, hostname: hostname}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.active >= l.max {
			l.mu.Unlock()
			go func() {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte("421 4.3.2 " + l.hostname + " too many sessions, try again later\r\n"))
				c.Close()
			}()
			continue
		}
		l.active++
		l.mu.Unlock()
		return &countedConn{Conn: c, l: l}, nil
	}
}

type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.active--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
