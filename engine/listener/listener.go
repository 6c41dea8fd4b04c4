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
)

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

// Options are the settings shared by every listener.
type Options struct {
	Hostname  string
	Sources   []config.Source
	Users     []config.SMTPUser
	Spool     Spooler
	Queue     Enqueuer
	Log       *zap.Logger
	Now       func() time.Time // nil: time.Now
	AuthDelay time.Duration    // pause before answering a failed AUTH [1s]
}

// Server runs the configured listeners.
type Server struct {
	opts     Options
	policy   *policy
	servers  []*smtp.Server
	lns      []net.Listener
	mu       sync.Mutex
	wg       sync.WaitGroup
	shutdown bool
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
	s := &Server{opts: opts, policy: p}
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

// Shutdown stops accepting, waits for sessions to end until ctx is done,
// then closes whatever is left. A transaction that was being spooled
// finishes first: Put is not interrupted.
func (s *Server) Shutdown(ctx context.Context) {
	var wg sync.WaitGroup
	for _, srv := range s.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
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
