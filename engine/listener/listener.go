// Package listener is the SMTP injection side: it decides who may inject
// (sources, AUTH), what is accepted (size, syntax, line rules), and hands each
// accepted message to the spool before answering 250. Nothing is acknowledged
// before the spool says it is durable (RFC 5321 §6.1).
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/smtpd"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/engine/submit"
)

// readTimeout bounds each read from a client: RFC 5321 §4.5.3.2.7 asks
// servers to wait at least 5 minutes for the next command.
const readTimeout = 5 * time.Minute

// DefaultMaxMessageSize applies to sources without max-message-size.
const DefaultMaxMessageSize = 50 << 20

// Spooler is the part of the spool the listener needs.
type Spooler interface {
	NewID() string
	Put(ctx context.Context, m *spool.Message, body []byte) error
}

// Enqueuer receives every message once it is durable.
type Enqueuer interface {
	Enqueue(m *spool.Message)
}

// VMTAs tells whether a VMTA or pool name is configured.
type VMTAs interface {
	Known(name string) bool
}

// Options are the settings shared by every listener.
type Options struct {
	Hostname string
	Sources  []config.Source
	Users    []config.SMTPUser
	Spool    Spooler
	Queue    Enqueuer
	VMTAs    VMTAs // nil: every name is accepted
	// Transforms run on every accepted message before it is spooled
	// (header additions, then DKIM signing); see engine/submit.
	Transforms []submit.Transform
	// Gate, when set, claims mail to our own report addresses and refuses
	// suppressed recipients (package fbl; see intercept.go).
	Gate      Gate
	Log       *zap.Logger
	Now       func() time.Time // nil: time.Now
	AuthDelay time.Duration    // pause before answering a failed AUTH [1s]
}

// Server runs the configured listeners.
type Server struct {
	opts    Options
	submit  *submit.Pipeline
	policy  atomic.Pointer[policy] // swapped by SetPolicy (reload)
	servers []*smtpd.Server
	lns     []net.Listener
	wg      sync.WaitGroup

	mu       sync.Mutex
	sessions map[*session]struct{}

	authLimit *authLimiter // AUTH failures per client address (authlimit.go)
}

// track adds or removes a live session.
func (s *Server) track(sess *session, live bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if live {
		s.sessions[sess] = struct{}{}
	} else {
		delete(s.sessions, sess)
	}
}

// New prepares servers for the given listener configs; Listen binds them.
func New(lcfgs []config.Listener, opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AuthDelay == 0 {
		opts.AuthDelay = time.Second
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	p, err := newPolicy(opts.Sources, opts.Users)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, sessions: make(map[*session]struct{}), authLimit: newAuthLimiter()}
	s.policy.Store(p)
	s.submit = &submit.Pipeline{Spool: opts.Spool, Queue: opts.Queue, Transforms: opts.Transforms}
	for _, lc := range lcfgs {
		var tlsCfg *tls.Config
		if lc.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(lc.TLSCert, lc.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("listener %s: %w", lc.Address, err)
			}
			tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		// Our own protocol engine: go-smtp's server reads DATA a byte at a
		// time and writes each reply on its own (see engine/smtpd).
		srv := &smtpd.Server{Backend: &backend{s: s}}
		srv.Domain = opts.Hostname
		srv.TLSConfig = tlsCfg
		srv.EnableREQUIRETLS = tlsCfg != nil // RFC 8689 §2: offered only after TLS (engine/smtpd checks)
		srv.MaxMessageBytes = p.maxSize
		srv.MaxRecipients = 1000
		srv.MaxLineLength = 2000          // command lines; RFC 5321 §4.5.3.1.4 asks for at least 512
		srv.AllowInsecureAuth = true      // gated per source in AuthMechanisms
		srv.EnableSMTPUTF8 = true         // RFC 6531
		srv.EnableDSN = true              // RFC 3461
		srv.ReadTimeout = 5 * time.Minute // RFC 5321 §4.5.3.2.7
		if lc.CommandTimeout > 0 {
			srv.ReadTimeout = lc.CommandTimeout.D()
		}
		srv.WriteTimeout = time.Minute
		srv.MaxDataLineLength = maxLineLength // RFC 5321 §4.5.3.1.6
		srv.ErrorLog = zapErrorLog{opts.Log}
		s.servers = append(s.servers, srv)
	}
	return s, nil
}

// Listen binds every listener address and starts serving. Each listener
// admits at most its max-sessions concurrent sessions; the rest are told
// 421 4.3.2 and closed.
func (s *Server) Listen(lcfgs []config.Listener) error {
	for i, lc := range lcfgs {
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listener %s: %w", lc.Address, err)
		}
		lim := newLimitListener(ln, lc.MaxSessions, s.opts.Hostname)
		lim.perIP, lim.lineTimeout = lc.MaxSessionsPerIP, lc.CommandTimeout.D() // limit.go, guard.go
		s.lns = append(s.lns, lim)
		srv := s.servers[i]
		var serveLn net.Listener = lim
		if lc.ImplicitTLS {
			// RFC 8314 §3.3: TLS from the first byte. Wrapped outermost so
			// that sessions see a *tls.Conn (and so count as TLS for AUTH).
			serveLn = tls.NewListener(lim, srv.TLSConfig)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.Serve(serveLn); err != nil && !errors.Is(err, smtpd.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.opts.Log.Error("listener stopped", zap.String("address", lc.Address), zap.Error(err))
			}
		}()
		s.opts.Log.Info("listening", zap.String("address", ln.Addr().String()))
	}
	return nil
}

// Addrs returns the bound addresses (useful with port 0).
func (s *Server) Addrs() []net.Addr {
	var a []net.Addr
	for _, ln := range s.lns {
		a = append(a, ln.Addr())
	}
	return a
}

func (s *Server) closeListeners() {
	for _, ln := range s.lns {
		ln.Close()
	}
}

// Shutdown stops accepting and ends idle sessions with 421 4.3.2; a session
// inside DATA or BDAT finishes its transaction first (engine/smtpd), so a
// message being spooled still gets its 250. When ctx ends, whatever remains
// is closed.
func (s *Server) Shutdown(ctx context.Context) {
	s.closeListeners() // at once: no new session from here on
	var wg sync.WaitGroup
	for _, srv := range s.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.Shutdown(ctx)
		}()
	}
	wg.Wait()
	s.wg.Wait()
}

type zapErrorLog struct{ log *zap.Logger }

func (z zapErrorLog) Printf(format string, v ...interface{}) {
	z.log.Debug("smtp server", zap.String("detail", fmt.Sprintf(format, v...)))
}
func (z zapErrorLog) Println(v ...interface{}) {
	z.log.Debug("smtp server", zap.String("detail", fmt.Sprint(v...)))
}
