// Package delivery is Sluice's outbound SMTP client: it connects from a
// VMTA's source IP to one MX host, negotiates EHLO and opportunistic STARTTLS,
// and runs mail transactions, pipelined when the server offers PIPELINING.
// Every failure is a *reply.Error; a Conn is not safe for concurrent use.
package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-mta/sluice/engine/reply"
)

// Default timeouts, RFC 5321 §4.5.3.2.
const (
	defaultConnectTimeout = 30 * time.Second
	defaultCommandTimeout = 5 * time.Minute  // RFC 5321 §4.5.3.2.1–.2.4
	defaultDataTimeout    = 10 * time.Minute // RFC 5321 §4.5.3.2.6
	quitTimeout           = 10 * time.Second
)

// Config describes how to connect: from which address, under which name,
// with which timeouts.
type Config struct {
	LocalIP        netip.Addr     // source IP to bind (the VMTA's); invalid/zero = kernel chooses
	Helo           string         // EHLO name (the VMTA's hostname)
	UseStartTLS    bool           // opportunistic STARTTLS when offered
	RequireTLS     bool           // STARTTLS must succeed: no plaintext session, no fallback (require-starttls, MTA-STS enforce)
	TLSConfig      *tls.Config    // nil → opportunistic: InsecureSkipVerify (RFC 7435), ServerName = host name, MinVersion TLS1.2
	RootCAs        *x509.CertPool // roots for Verified (nil: the system's); never enforced by Dial itself
	ConnectTimeout time.Duration
	CommandTimeout time.Duration // each command's reply; also each write
	DataTimeout    time.Duration // the reply to the final "."
}

func (cfg Config) withDefaults() Config {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = defaultCommandTimeout
	}
	if cfg.DataTimeout <= 0 {
		cfg.DataTimeout = defaultDataTimeout
	}
	if cfg.Helo == "" {
		cfg.Helo = "localhost"
	}
	return cfg
}

// validHelo reports whether name can follow EHLO without changing the
// command: printable ASCII, no spaces (RFC 5321 §4.1.1.1).
func validHelo(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] >= 0x7f {
			return false
		}
	}
	return true
}

// Conn is one SMTP session with a remote MX host, past EHLO (and STARTTLS
// when it succeeded). It is not safe for concurrent use.
type Conn struct {
	cfg  Config
	host string

	raw net.Conn // the TCP socket; deadlines are set here
	nc  net.Conn // raw, or the TLS connection over it
	br  *bufio.Reader
	bw  *bufio.Writer

	ext        []string          // EHLO keywords, upper-case, server order
	params     map[string]string // keyword → its parameters
	offeredTLS bool              // STARTTLS was in the first EHLO reply
	tlsState   *tls.ConnectionState
	verified   *error // Verified's memoized answer

	sent   int
	broken error // set once the session is unusable

	mu       sync.Mutex // guards the fields below, shared with the ctx watcher
	canceled bool
	ctxDL    time.Time
	closed   bool
}

// Dial connects to addr ("ip:port") of the MX host hostName, reads the
// greeting, sends EHLO (HELO on a 5xx, RFC 5321 §3.2) and, when offered and
// cfg.UseStartTLS is set, does STARTTLS and EHLO again (RFC 3207 §4.2). If
// the TLS handshake fails it reconnects once without TLS (RFC 7435 §1.3).
// Errors are *reply.Error: a failed connect is 421 4.4.1, a broken
// connection 421 4.4.2, a 4xx/5xx greeting or EHLO/HELO reply is that reply.
func Dial(ctx context.Context, addr, hostName string, cfg Config) (*Conn, error) {
	cfg = cfg.withDefaults()
	if !validHelo(cfg.Helo) {
		return nil, reply.New(451, reply.Status{4, 3, 5}, "invalid HELO name configured")
	}
	c, err := dial(ctx, addr, hostName, cfg, cfg.UseStartTLS || cfg.RequireTLS)
	var tf *tlsFailure
	if errors.As(err, &tf) && cfg.RequireTLS {
		// No plaintext retry when TLS is required: defer instead.
		return nil, reply.Wrap(451, reply.Status{4, 7, 5}, "TLS negotiation failed", tf)
	}
	if errors.As(err, &tf) && ctx.Err() == nil {
		// RFC 7435 §1.3 (opportunistic security): rather plaintext than nothing.
		c, err = dial(ctx, addr, hostName, cfg, false)
	}
	return c, err
}

func dial(ctx context.Context, addr, hostName string, cfg Config, useTLS bool) (*Conn, error) {
	d := net.Dialer{Timeout: cfg.ConnectTimeout}
	if cfg.LocalIP.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: cfg.LocalIP.Unmap().AsSlice()} // the VMTA's IP, never the default route
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, reply.Wrap(421, reply.Status{4, 4, 1}, "no answer from host", err)
	}
	c := &Conn{cfg: cfg, host: hostName, raw: nc, nc: nc}
	c.br = bufio.NewReaderSize(nc, 4096)
	c.bw = bufio.NewWriterSize(deadlineWriter{c}, 32<<10)
	stop := c.watch(ctx)
	defer stop()
	if err := c.handshake(ctx, useTLS); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// handshake reads the greeting, says EHLO and, if asked, upgrades to TLS.
func (c *Conn) handshake(ctx context.Context, useTLS bool) error {
	code, text, err := c.readReply(c.cfg.CommandTimeout) // RFC 5321 §4.5.3.2.1: initial 220
	if err != nil {
		return c.dialLost(ctx, err)
	}
	if code/100 != 2 {
		if code != 421 { // RFC 5321 §3.1: after a 554 greeting the client should QUIT
			c.quit()
		}
		return reply.Parse(code, text)
	}
	if err := c.hello(ctx); err != nil {
		return err
	}
	c.offeredTLS = c.Has("STARTTLS")
	if useTLS && c.offeredTLS {
		return c.startTLS(ctx)
	}
	if c.cfg.RequireTLS {
		c.quit()
		return reply.New(451, reply.Status{4, 7, 4}, "TLS is required but was not offered by the host")
	}
	return nil
}

// hello sends EHLO, falling back to HELO on a 5xx (RFC 5321 §3.2), and
// records the advertised extensions.
func (c *Conn) hello(ctx context.Context) error {
	code, text, err := c.cmd("EHLO " + c.cfg.Helo)
	if err != nil {
		return c.dialLost(ctx, err)
	}
	if code/100 == 5 {
		code, text, err = c.cmd("HELO " + c.cfg.Helo) // RFC 5321 §3.2: server without EHLO
		if err != nil {
			return c.dialLost(ctx, err)
		}
		c.setExtensions("")
	} else {
		c.setExtensions(text)
	}
	if code/100 != 2 {
		if code != 421 { // RFC 5321 §3.8: after 421 the server is already closing
			c.quit()
		}
		return reply.Parse(code, text)
	}
	return nil
}

// setExtensions parses an EHLO reply's text (RFC 5321 §4.1.1.1): the first
// line greets, each further line is a keyword and its parameters.
func (c *Conn) setExtensions(text string) {
	c.ext = c.ext[:0]
	c.params = make(map[string]string)
	lines := strings.Split(text, "\n")
	for _, l := range lines[1:] {
		kw, param, _ := strings.Cut(strings.TrimSpace(l), " ")
		kw = strings.ToUpper(kw)
		if kw == "" {
			continue // smtp-sink ends with a bare "250 "
		}
		if _, dup := c.params[kw]; !dup {
			c.ext = append(c.ext, kw)
		}
		c.params[kw] = strings.TrimSpace(param)
	}
}

// cmd writes one command line, flushes and reads its reply.
func (c *Conn) cmd(line string) (int, string, error) {
	if err := c.writeLine(line); err != nil {
		return 0, "", err
	}
	if err := c.bw.Flush(); err != nil {
		return 0, "", err
	}
	return c.readReply(c.cfg.CommandTimeout)
}

// writeLine buffers one command line; RFC 5321 §2.3.8: lines end in CRLF.
func (c *Conn) writeLine(line string) error {
	c.bw.WriteString(line)
	_, err := c.bw.WriteString("\r\n")
	return err
}

// readReply reads one reply under a read deadline of timeout.
func (c *Conn) readReply(timeout time.Duration) (int, string, error) {
	c.setDeadline(timeout, false)
	return readReply(c.br)
}

// dialLost turns a failure after connect into 421 4.4.2.
func (c *Conn) dialLost(ctx context.Context, err error) *reply.Error {
	return reply.Wrap(421, reply.Status{4, 4, 2}, "connection lost", withCtx(ctx, err))
}

// withCtx adds the context's error to an I/O error it caused.
func withCtx(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded // the socket deadline fired first
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return errors.Join(cerr, err)
	}
	return err
}

// quit sends QUIT and reads the reply, best effort, under a short deadline.
func (c *Conn) quit() {
	t := min(quitTimeout, c.cfg.CommandTimeout)
	c.setDeadline(t, true)
	if c.writeLine("QUIT") == nil && c.bw.Flush() == nil {
		c.readReply(t)
	}
}

// Extensions returns the advertised EHLO keywords, upper-case, in server
// order. "STARTTLS" is kept when it was offered before TLS.
func (c *Conn) Extensions() []string {
	out := append([]string(nil), c.ext...)
	if _, again := c.params["STARTTLS"]; c.offeredTLS && !again {
		out = append(out, "STARTTLS")
	}
	return out
}

// Has reports whether ext (any case) was advertised.
func (c *Conn) Has(ext string) bool {
	_, ok := c.params[strings.ToUpper(ext)]
	if !ok && c.offeredTLS && strings.EqualFold(ext, "STARTTLS") {
		return true
	}
	return ok
}

// Param returns the parameters advertised with ext ("" when none or absent),
// e.g. "10240000" for "SIZE 10240000".
func (c *Conn) Param(ext string) string { return c.params[strings.ToUpper(ext)] }

// MaxSize returns the fixed message size limit from SIZE (RFC 1870 §4), or
// 0 when none is advertised.
func (c *Conn) MaxSize() int64 {
	n, err := strconv.ParseInt(c.Param("SIZE"), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// RemoteHost returns the host name given to Dial.
func (c *Conn) RemoteHost() string { return c.host }

// RemoteIP returns the remote address's IP.
func (c *Conn) RemoteIP() string { return ipOf(c.raw.RemoteAddr()) }

// LocalIP returns the local address's IP.
func (c *Conn) LocalIP() string { return ipOf(c.raw.LocalAddr()) }

// Sent returns the number of transactions on this connection that got a
// reply to their final "." (whatever its code).
func (c *Conn) Sent() int { return c.sent }

func ipOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, _ := net.SplitHostPort(a.String())
	return host
}

// Quit sends QUIT, waits briefly for the reply, and closes the connection.
func (c *Conn) Quit() error {
	if c.broken == nil && !c.isClosed() {
		c.quit()
	}
	return c.Close()
}

// Close closes the connection without QUIT. It is safe to call twice.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	if c.broken == nil {
		c.broken = errors.New("delivery: connection closed")
	}
	return c.nc.Close()
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// watch makes ctx bound every I/O until stop is called: its deadline caps
// each per-command deadline, and its cancellation expires them at once.
func (c *Conn) watch(ctx context.Context) (stop func()) {
	c.mu.Lock()
	c.canceled = false
	c.ctxDL, _ = ctx.Deadline()
	c.mu.Unlock()
	stopAfter := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.canceled = true
		c.raw.SetDeadline(time.Unix(1, 0))
	})
	return func() {
		stopAfter()
		c.mu.Lock()
		c.canceled = false
		c.ctxDL = time.Time{}
		c.mu.Unlock()
	}
}

// setDeadline sets the read (or, with both, read and write) deadline to now
// plus timeout, capped by the watched context.
func (c *Conn) setDeadline(timeout time.Duration, both bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := time.Now().Add(timeout)
	if !c.ctxDL.IsZero() && c.ctxDL.Before(t) {
		t = c.ctxDL
	}
	if c.canceled {
		t = time.Unix(1, 0)
	}
	if both {
		c.raw.SetDeadline(t)
	} else {
		c.raw.SetReadDeadline(t)
	}
}

func (c *Conn) setWriteDeadline(timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := time.Now().Add(timeout)
	if !c.ctxDL.IsZero() && c.ctxDL.Before(t) {
		t = c.ctxDL
	}
	if c.canceled {
		t = time.Unix(1, 0)
	}
	c.raw.SetWriteDeadline(t)
}

// deadlineWriter gives every write to the socket a fresh CommandTimeout
// deadline, so a body is bounded per block rather than as a whole
// (RFC 5321 §4.5.3.2.5).
type deadlineWriter struct{ c *Conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.c.setWriteDeadline(w.c.cfg.CommandTimeout)
	return w.c.nc.Write(p)
}

// String describes the connection for logs: "mx.example.com[192.0.2.1]".
func (c *Conn) String() string { return fmt.Sprintf("%s[%s]", c.host, c.RemoteIP()) }
