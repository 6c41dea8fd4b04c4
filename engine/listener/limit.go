package listener

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// limitListener admits at most max concurrent connections, and at most
// perIP from one client address; the others get 421 (RFC 5321 §3.8) and are
// closed at once: 4.3.2 "system not accepting network messages" when the
// listener is full, 4.7.0 when one address holds too many (RFC 3463).
// Admitted connections are wrapped in a lineGuard (guard.go) when
// lineTimeout is set.
type limitListener struct {
	net.Listener
	max         int
	perIP       int           // 0: no per-address limit
	lineTimeout time.Duration // 0: no line guard
	hostname    string
	mu          sync.Mutex
	active      int
	byIP        map[netip.Addr]int
}

func newLimitListener(ln net.Listener, max int, hostname string) *limitListener {
	if max <= 0 {
		max = 200
	}
	return &limitListener{Listener: ln, max: max, hostname: hostname, byIP: map[netip.Addr]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		refusal := ""
		switch {
		case l.active >= l.max:
			refusal = "421 4.3.2 " + l.hostname + " too many sessions, try again later\r\n"
		case l.perIP > 0 && l.byIP[ip] >= l.perIP:
			refusal = "421 4.7.0 " + l.hostname + " too many sessions from your address, try again later\r\n"
		}
		if refusal != "" {
			l.mu.Unlock()
			go func() {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte(refusal))
				c.Close()
			}()
			continue
		}
		l.active++
		l.byIP[ip]++
		l.mu.Unlock()
		var nc net.Conn = c
		if l.lineTimeout > 0 {
			nc = newLineGuard(c, l.lineTimeout)
		}
		return &countedConn{Conn: nc, l: l, ip: ip}, nil
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

type countedConn struct {
	net.Conn
	l    *limitListener
	ip   netip.Addr
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.active--
		if c.l.byIP[c.ip]--; c.l.byIP[c.ip] <= 0 {
			delete(c.l.byIP, c.ip)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
