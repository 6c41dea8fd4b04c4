package testenv

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// PolicyServer is an HTTPS server for MTA-STS policies (RFC 8461 §3.3): it
// answers https://mta-sts.<domain>/.well-known/mta-sts.txt with the policy
// set for <domain>, under a certificate from the test CA.
type PolicyServer struct {
	Addr string

	mu       sync.Mutex
	policies map[string]string // domain → body
	fetches  map[string]int
}

// StartPolicyServer serves policies on addr (e.g. "127.44.0.1:0") with a
// certificate for mta-sts.<d> of each of domains.
func StartPolicyServer(tb testing.TB, addr string, ca *CA, domains ...string) *PolicyServer {
	tb.Helper()
	var names []string
	for _, d := range domains {
		names = append(names, "mta-sts."+d)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("policy server listen %s: %v", addr, err)
	}
	ps := &PolicyServer{Addr: l.Addr().String(), policies: map[string]string{}, fetches: map[string]int{}}
	srv := &http.Server{Handler: ps, TLSConfig: ca.ServerConfig(tb, names...), ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() { // owned by the server: ends when Close closes the listener
		defer close(done)
		srv.Serve(tls.NewListener(l, srv.TLSConfig))
	}()
	tb.Cleanup(func() { srv.Close(); <-done })
	return ps
}

// Set publishes body as domain's policy; "" removes it (404).
func (ps *PolicyServer) Set(domain, body string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.policies[domain] = body
}

// Fetches returns how many times domain's policy was fetched.
func (ps *PolicyServer) Fetches(domain string) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.fetches[domain]
}

// ServeHTTP answers a policy request by its Host header.
func (ps *PolicyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	domain, ok := strings.CutPrefix(strings.ToLower(host), "mta-sts.")
	ps.mu.Lock()
	body := ps.policies[domain]
	ps.fetches[domain]++
	ps.mu.Unlock()
	if !ok || r.URL.Path != "/.well-known/mta-sts.txt" || body == "" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(body))
}
