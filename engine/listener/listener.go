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
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
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
	Log        *zap.Logger
	Now        func() time.Time // nil: time.Now
	AuthDelay  time.Duration    // pause before answering a failed AUTH [1s]
}

// Server runs the configured listeners.
type Server struct {
	opts    Options
	submit  *submit.Pipeline
	policy  *policy
	servers []*smtp.Server
	lns     []net.Listener
	wg      sync.WaitGroup

	mu       sync.Mutex
	sessions map[*session]struct{}
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
	s := &Server{opts: opts, policy: p, sessions: make(map[*session]struct{})}
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
		srv := smtp.NewServer(&backend{s: s})
		srv.Addr = lc.Address
		srv.Domain = opts.Hostname
		srv.TLSConfig = tlsCfg
		srv.MaxMessageBytes = p.maxSize
		srv.MaxRecipients = 1000
		srv.MaxLineLength = 2000          // command lines; RFC 5321 §4.5.3.1.4 asks for at least 512
		srv.AllowInsecureAuth = true      // gated per source in AuthMechanisms
		srv.EnableSMTPUTF8 = true         // RFC 6531
		srv.EnableDSN = true              // RFC 3461
		srv.ReadTimeout = 5 * time.Minute // RFC 5321 §4.5.3.2.7
		srv.WriteTimeout = time.Minute
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
		s.lns = append(s.lns, lim)
		srv := s.servers[i]
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.Serve(lim); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
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

// markBusy flags a session inside DATA. Under the same lock as Shutdown's
// sweep, so a sweep that ran just before DATA began cannot cut it: the
// read deadline is renewed here.
func (s *Server) markBusy(sess *session, busy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.busy = busy
	if busy {
		sess.conn.Conn().SetReadDeadline(time.Now().Add(readTimeout))
	}
}

// Shutdown stops accepting and ends idle sessions (go-smtp answers them
// 421 4.4.2 as on a read timeout); a session inside DATA finishes its
// transaction first, so a message being spooled still gets its 250. When
// ctx ends, whatever remains is closed.
func (s *Server) Shutdown(ctx context.Context) {
	s.closeListeners() // at once: no new session from here on
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for _, srv := range s.servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.Shutdown(ctx)
			}()
		}
		wg.Wait()
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		for sess := range s.sessions {
			if !sess.busy {
				// Repeated on every tick: go-smtp renews the deadline before each read.
				sess.conn.Conn().SetReadDeadline(time.Now())
			}
		}
		s.mu.Unlock()
		select {
		case <-done:
			s.wg.Wait()
			return
		case <-ctx.Done():
			s.mu.Lock()
			for sess := range s.sessions {
				sess.conn.Conn().Close()
			}
			s.mu.Unlock()
			<-done
			s.wg.Wait()
			return
		case <-tick.C:
		}
	}
}

type zapErrorLog struct{ log *zap.Logger }

func (z zapErrorLog) Printf(format string, v ...interface{}) {
	z.log.Debug("smtp server", zap.String("detail", fmt.Sprintf(format, v...)))
}
func (z zapErrorLog) Println(v ...interface{}) {
	z.log.Debug("smtp server", zap.String("detail", fmt.Sprint(v...)))
}
