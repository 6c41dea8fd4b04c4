// Package dnstest runs a real, in-process authoritative DNS server on
// 127.0.0.1 for tests: UDP and TCP on the same port, records set and changed
// while it runs, faults (SERVFAIL, silent drops) injected per name, and a
// count of the queries it received. It answers like an authoritative server
// (RFC 1034 §4.3.2): NOERROR with the records, NODATA with an SOA for a name
// that exists without the asked type (RFC 2308 §2.2), NXDOMAIN otherwise.
//
// The package imports "testing" only for the testing.TB type, so a binary
// that links it does not register test flags.
package dnstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// MX is one MX record's data. A Host of "." is a null MX (RFC 7505 §3).
type MX struct {
	Pref uint16
	Host string
}

// bufSize is the EDNS0 payload size the server advertises and the largest
// UDP answer it sends (RFC 6891 §6.2.5; 1232 is the DNS Flag Day 2020 value).
const bufSize = 1232

// defaultTTL is the TTL of every answer until SetTTL changes it.
const defaultTTL = 300

// records holds what is known about one owner name.
type records struct {
	mx   []MX
	a    []netip.Addr
	aaaa []netip.Addr
	txt  []string
	ptr  []string
}

func (r *records) empty() bool {
	return len(r.mx) == 0 && len(r.a) == 0 && len(r.aaaa) == 0 && len(r.txt) == 0 && len(r.ptr) == 0
}

type queryKey struct {
	name  string
	qtype uint16
}

// Server is an authoritative DNS server listening on 127.0.0.1. All methods
// are safe for concurrent use, also while queries are being answered.
type Server struct {
	tb   testing.TB // nil when made by Listen
	addr string
	udp  *dns.Server
	tcp  *dns.Server
	done sync.WaitGroup // the two serve goroutines

	closeOnce sync.Once
	closed    chan struct{} // closed by Close: cuts delays short

	mu       sync.Mutex
	names    map[string]*records // lower-case FQDN → records
	servfail map[string]bool
	drop     map[string]bool
	delay    map[string]time.Duration
	ttl      uint32
	queries  map[queryKey]int
}

// Start starts a server for the test and closes it when the test ends. It
// fails the test if no port can be bound.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := Listen()
	if err != nil {
		tb.Fatalf("dnstest: %v", err)
	}
	s.tb = tb
	tb.Cleanup(s.Close)
	return s
}

// Listen starts a server without a testing.TB, for harness code outside a
// test function (TestMain). The caller must Close it. Set methods of such a
// server panic on malformed input, where Start's fail the test instead.
func Listen() (*Server, error) {
	s := &Server{
		names:    make(map[string]*records),
		servfail: make(map[string]bool),
		drop:     make(map[string]bool),
		delay:    make(map[string]time.Duration),
		ttl:      defaultTTL,
		closed:   make(chan struct{}),
		queries:  make(map[queryKey]int),
	}
	pc, l, err := listenPair()
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h, UDPSize: dns.MaxMsgSize}
	s.tcp = &dns.Server{Listener: l, Handler: h}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		s.done.Add(1)
		go func() {
			defer s.done.Done()
			_ = srv.ActivateAndServe() // returns once Shutdown has run
		}()
		<-started
	}
	return s, nil
}

// listenPair binds UDP and TCP on one kernel-chosen port of 127.0.0.1. The
// TCP bind can lose the race for that port to another process, so it retries
// with a fresh port.
func listenPair() (net.PacketConn, net.Listener, error) {
	var errs []error
	for range 50 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp: %w", err)
		}
		l, err := net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if len(errs) < 3 {
			errs = append(errs, err)
		}
	}
	return nil, nil, fmt.Errorf("no port free for both udp and tcp: %w", errors.Join(errs...))
}

// Addr returns the "127.0.0.1:PORT" address that serves both UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and waits for its goroutines. It may be called more
// than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
		s.done.Wait()
	})
}

// SetMX replaces the MX set of domain; no mx removes it. A host of "."
// makes a null MX (RFC 7505 §3).
func (s *Server) SetMX(domain string, mx ...MX) {
	set := make([]MX, len(mx))
	for i, m := range mx {
		set[i] = MX{Pref: m.Pref, Host: canonical(m.Host)}
	}
	s.update(domain, func(r *records) { r.mx = set })
}

// SetA replaces the A records of host; no ips removes them.
func (s *Server) SetA(host string, ips ...string) {
	set := s.parseIPs(host, ips, true)
	s.update(host, func(r *records) { r.a = set })
}

// SetAAAA replaces the AAAA records of host; no ips removes them.
func (s *Server) SetAAAA(host string, ips ...string) {
	set := s.parseIPs(host, ips, false)
	s.update(host, func(r *records) { r.aaaa = set })
}

// SetTXT replaces the TXT records of name, one record per string; no txt
// removes them. Strings longer than 255 bytes are split into several
// character-strings of one record (RFC 7208 §3.3).
func (s *Server) SetTXT(name string, txt ...string) {
	set := append([]string(nil), txt...)
	s.update(name, func(r *records) { r.txt = set })
}

// SetPTR replaces the reverse (PTR) names of an address.
func (s *Server) SetPTR(ip string, names ...string) {
	arpa, err := dns.ReverseAddr(ip)
	if err != nil {
		s.fail("SetPTR %q: %v", ip, err)
		return
	}
	set := append([]string(nil), names...)
	s.update(arpa, func(r *records) { r.ptr = set })
}

// SetServFail makes every query for name answer SERVFAIL, whatever records
// it has, until Reset.
func (s *Server) SetServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servfail[canonical(name)] = true
}

// SetDrop makes the server ignore every query for name, so that the client
// times out, until Reset.
func (s *Server) SetDrop(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop[canonical(name)] = true
}

// SetDelay makes the server wait d before answering each query for name
// (or before ignoring it, with SetDrop), until Reset. Close cuts the wait
// short.
func (s *Server) SetDelay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay[canonical(name)] = d
}

// Reset removes name's records and its SERVFAIL, drop and delay settings.
// Query counts are kept.
func (s *Server) Reset(name string) {
	n := canonical(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, n)
	delete(s.servfail, n)
	delete(s.drop, n)
	delete(s.delay, n)
}

// SetTTL sets the TTL of every record, and the SOA minimum of negative
// answers, from now on. The default is 300.
func (s *Server) SetTTL(ttl uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl = ttl
}

// Queries returns how many queries for name and qtype (dns.TypeMX, …) the
// server has received, over UDP and TCP, answered or not.
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[queryKey{canonical(name), qtype}]
}

func (s *Server) update(name string, f func(*records)) {
	n := canonical(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.names[n]
	if r == nil {
		r = new(records)
		s.names[n] = r
	}
	f(r)
	if r.empty() {
		delete(s.names, n)
	}
}

func (s *Server) parseIPs(host string, ips []string, v4 bool) []netip.Addr {
	set := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Is4() != v4 || a.Zone() != "" {
			s.fail("dnstest: %s: bad address %q for this record type", host, ip)
			continue
		}
		set = append(set, a)
	}
	return set
}

func (s *Server) fail(format string, args ...any) {
	if s.tb == nil {
		panic(fmt.Sprintf(format, args...))
	}
	s.tb.Helper()
	s.tb.Fatalf(format, args...)
}

// canonical returns name as a lower-case FQDN, the key of every map here.
func canonical(name string) string {
	return dns.CanonicalName(strings.TrimSpace(name))
}
