// Package smtpd is Sluice's own SMTP server protocol engine (RFC 5321, server
// side): the command loop, ESMTP parameters, DATA and BDAT, STARTTLS and AUTH.
// It decides nothing about mail: a Backend's Session accepts or refuses each
// step. Replies are buffered and written only when the client has nothing
// more in flight (RFC 2920), and DATA is unstuffed in bulk, not byte by byte.
// It reuses go-smtp's types (MailOptions, RcptOptions, SMTPError) so that
// sessions written for go-smtp need few changes.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("smtpd: server closed")

// Backend creates a Session for each client, at its first HELO or EHLO
// (and again after STARTTLS, which discards the previous session).
type Backend interface {
	NewSession(c *Conn) (Session, error)
}

// BackendFunc adapts a function to Backend.
type BackendFunc func(c *Conn) (Session, error)

// NewSession calls f.
func (f BackendFunc) NewSession(c *Conn) (Session, error) { return f(c) }

// Session handles one client's transactions. Its methods are called from
// the connection's goroutine only. An error that is an *smtp.SMTPError is
// sent as that reply; any other error becomes 451 4.3.0.
type Session interface {
	// Reset ends the transaction in progress (RSET, EHLO, after DATA).
	Reset()
	// Logout is called once when the session ends.
	Logout() error
	// Mail starts a transaction (RFC 5321 §4.1.1.2).
	Mail(from string, opts *smtp.MailOptions) error
	// Rcpt adds a recipient (RFC 5321 §4.1.1.3).
	Rcpt(to string, opts *smtp.RcptOptions) error
	// Data receives the message content, dot-unstuffed (DATA) or joined
	// from its chunks (BDAT). A nil error means the message is accepted.
	Data(r io.Reader) error
}

// AuthSession is a Session that supports AUTH (RFC 4954).
type AuthSession interface {
	Session
	// AuthMechanisms lists the mechanisms to advertise in EHLO.
	AuthMechanisms() []string
	// Auth starts an exchange for mech.
	Auth(mech string) (sasl.Server, error)
}

// Logger receives diagnostics: unexpected session errors and panics.
type Logger interface {
	Printf(format string, v ...interface{})
}

// Defaults for zero-valued Server fields.
const (
	DefaultReadTimeout   = 5 * time.Minute // RFC 5321 §4.5.3.2.7 (and ≥ 3 min per data block, §4.5.3.2.5)
	DefaultWriteTimeout  = time.Minute
	DefaultMaxLineLength = 2000 // command lines with CRLF; RFC 5321 §4.5.3.1.4 asks for at least 512
	DefaultMaxRecipients = 1000 // RFC 5321 §4.5.3.1.8 asks for at least 100
)

// Server accepts SMTP clients and runs their sessions. Set its fields before
// Serve; they are read-only afterwards.
type Server struct {
	Backend Backend
	// Domain is the host name in the greeting and EHLO reply.
	Domain string
	// TLSConfig enables STARTTLS (RFC 3207) when set.
	TLSConfig *tls.Config
	// MaxMessageBytes is advertised with SIZE (RFC 1870) and enforced on
	// DATA and BDAT; 0 means no limit.
	MaxMessageBytes int64
	// MaxRecipients per transaction; 0 means DefaultMaxRecipients.
	MaxRecipients int
	// MaxLineLength bounds a command line, CRLF included; 0 means
	// DefaultMaxLineLength.
	MaxLineLength int
	// MaxDataLineLength bounds a line of DATA, CRLF excluded; 0 means no
	// limit. RFC 5321 §4.5.3.1.6 sets 998.
	MaxDataLineLength int
	// ReadTimeout bounds each wait for the client; WriteTimeout each write.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// AllowInsecureAuth offers AUTH without TLS.
	AllowInsecureAuth bool
	// EnableSMTPUTF8 (RFC 6531), EnableDSN (RFC 3461) and EnableREQUIRETLS
	// (RFC 8689, offered only over TLS) advertise and accept those
	// extensions.
	EnableSMTPUTF8   bool
	EnableDSN        bool
	EnableREQUIRETLS bool
	// ErrorLog receives diagnostics; nil discards them.
	ErrorLog Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*Conn]struct{}
	closing   atomic.Bool
}

func (s *Server) logf(format string, v ...interface{}) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, v...)
	}
}

func (s *Server) readTimeout() time.Duration {
	if s.ReadTimeout > 0 {
		return s.ReadTimeout
	}
	return DefaultReadTimeout
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return DefaultWriteTimeout
}

func (s *Server) maxLine() int {
	if s.MaxLineLength > 0 {
		return s.MaxLineLength
	}
	return DefaultMaxLineLength
}

func (s *Server) maxRcpts() int {
	if s.MaxRecipients > 0 {
		return s.MaxRecipients
	}
	return DefaultMaxRecipients
}

// Serve accepts connections on l until it is closed or the server shuts
// down; it then returns ErrServerClosed (or the accept error).
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE and the like: back off and keep serving.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.logf("smtpd: accept: %v; retrying in %v", err, delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		c := newConn(s, nc)
		if !s.track(c) {
			nc.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

func (s *Server) track(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*Conn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		l.Close()
	}
}

// Shutdown stops accepting, answers idle clients 421 4.3.2 and closes them,
// and lets a session inside DATA or BDAT finish its transaction (it gets
// its reply, then 421). It returns when every connection is gone, or when
// ctx ends, after closing whatever remains.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.closeListeners()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			// Wake sessions blocked reading a command; the read wrapper
			// keeps the deadline in the past from here on.
			if !c.inData.Load() {
				c.raw.SetReadDeadline(time.Now())
			}
		}
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.closeListeners()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.raw.Close()
	}
	return nil
}
