// Package admin serves the operator's HTTP API: JSON under /api/v1/, every
// route behind a bearer token compared in constant time. Other components
// mount their handlers with Server.Handle; the token never reaches a log.
package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// CookieName is the cookie the web monitor keeps the token in after its
// login; Handle accepts it like the Authorization header.
const CookieName = "sluice_admin"

// Options configure a Server.
type Options struct {
	Listen string      // host:port
	Token  string      // the admin bearer token; must not be empty
	Log    *zap.Logger // access log at debug, errors at warn
}

// Server is the admin HTTP server. Handle may be called before or after
// Start, from any goroutine.
type Server struct {
	mux   *http.ServeMux
	token atomic.Pointer[string]
	log   *zap.Logger
	ready atomic.Bool

	mu   sync.Mutex
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// New returns a Server with the admin token set; it does not listen yet.
// Besides the routes mounted later it answers GET /api/v1/healthz (alive)
// and GET /api/v1/readyz (503 until SetReady(true)), both with the token.
func New(opts Options) *Server {
	s := &Server{mux: http.NewServeMux(), log: opts.Log}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.SetToken(opts.Token)
	s.Handle("GET /api/v1/healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	s.Handle("GET /api/v1/readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			Error(w, http.StatusServiceUnavailable, "starting")
			return
		}
		JSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}))
	// Anything else under /api/ is a JSON 404, after the token check so an
	// unauthenticated client learns nothing about which routes exist.
	s.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Error(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	}))
	return s
}

// SetToken replaces the admin token (on reload). An empty token refuses
// every request that has no extra token of its own.
func (s *Server) SetToken(tok string) { s.token.Store(&tok) }

// SetReady sets what /api/v1/readyz answers.
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

// Handle registers h for pattern, a Go 1.22 ServeMux pattern such as
// "POST /api/v1/fbl" or "GET /api/v1/queues/{name}". A request must carry
// the admin token, or one of extraTokens, as "Authorization: Bearer TOKEN"
// or in the CookieName cookie; otherwise it gets a JSON 401. It panics,
// like http.ServeMux, on a pattern that conflicts with one already
// registered: that is a wiring bug.
func (s *Server) Handle(pattern string, h http.Handler, extraTokens ...string) {
	extra := make([][]byte, 0, len(extraTokens))
	for _, t := range extraTokens {
		if t != "" {
			extra = append(extra, []byte(t))
		}
	}
	s.mux.Handle(pattern, s.auth(h, extra))
}

// HandlePublic registers h for pattern without the token check, for what
// the operator chose to expose (metrics-public) and the web monitor's login
// page and assets.
func (s *Server) HandlePublic(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// auth wraps h with the token check.
func (s *Server) auth(h http.Handler, extra [][]byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, viaCookie := credential(r)
		if got == "" || !s.allowed([]byte(got), extra) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			Error(w, http.StatusUnauthorized, "missing or wrong bearer token")
			s.log.Debug("admin request refused", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
			return
		}
		if viaCookie && !safeMethod(r.Method) && !sameOrigin(r) {
			// A cookie travels with cross-site requests; a change made
			// with one must come from the monitor's own page.
			Error(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
		s.log.Debug("admin request", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
		h.ServeHTTP(w, r)
	})
}

// allowed compares got with the admin token and each extra token in
// constant time, checking all of them so timing tells nothing of which.
func (s *Server) allowed(got []byte, extra [][]byte) bool {
	ok := 0
	if tok := *s.token.Load(); tok != "" {
		ok |= subtle.ConstantTimeCompare(got, []byte(tok))
	}
	for _, t := range extra {
		ok |= subtle.ConstantTimeCompare(got, t)
	}
	return ok == 1
}

// credential returns the token a request carries and whether it came from
// the cookie.
func credential(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), false
		}
		return "", false
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return c.Value, true
	}
	return "", false
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin reports whether a browser request comes from this server's own
// pages: its Origin (or, lacking one, its Sec-Fetch-Site) says so.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		return o == "http://"+r.Host || o == "https://"+r.Host
	}
	site := r.Header.Get("Sec-Fetch-Site")
	return site == "" || site == "same-origin" || site == "none"
}

// Start listens on the address and serves until Shutdown.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.Serve(ln)
	return nil
}

// Serve serves on ln until Shutdown, in a goroutine Shutdown waits for.
func (s *Server) Serve(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      5 * time.Minute, // a large queue listing on a slow link
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(s.log),
	}
	s.done = make(chan struct{})
	srv, done := s.srv, s.done
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", zap.Error(err))
		}
	}()
}

// Addr is the address the server listens on, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// ServeHTTP serves r through the mux, for tests and embedding.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Shutdown stops accepting, lets requests in flight finish until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		srv.Close()
	}
	<-done
	return err
}
