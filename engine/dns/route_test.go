package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/reply"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable time source for WithClock.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := new(clock)
	c.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

func newResolver(t *testing.T, cfg Config, opts ...Option) *Resolver {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 1
	}
	r, err := New(cfg, zaptest.NewLogger(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// setup returns a DNS server and a resolver that asks it.
func setup(t *testing.T, opts ...Option) (*dnstest.Server, *Resolver) {
	t.Helper()
	s := dnstest.Start(t)
	return s, newResolver(t, Config{Servers: []string{s.Addr()}}, opts...)
}

// wantReply checks that err is a *reply.Error with code and status, and
// that its cause matches target when target is not nil.
func wantReply(t *testing.T, err error, code int, status string, target error) {
	t.Helper()
	var re *reply.Error
	if !errors.As(err, &re) {
		t.Fatalf("err = %v (%T), want a *reply.Error %d %s", err, err, code, status)
	}
	if re.Code != code || re.Status.String() != status {
		t.Errorf("reply = %d %s %q, want %d %s", re.Code, re.Status, re.Text, code, status)
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("cause = %v, want %v", re.Err, target)
	}
}

func names(hosts []Host) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, fmt.Sprintf("%d %s", h.Pref, h.Name))
	}
	return out
}

func TestRouteOrder(t *testing.T) {
	s, r := setup(t)
	s.SetMX("example.test",
		dnstest.MX{Pref: 20, Host: "c.example.test"},
		dnstest.MX{Pref: 10, Host: "A.example.test"},
		dnstest.MX{Pref: 10, Host: "b.example.test"},
		dnstest.MX{Pref: 30, Host: "gone.example.test"}, // NXDOMAIN: skipped
	)
	s.SetAAAA("a.example.test", "2001:db8::a")
	s.SetA("a.example.test", "192.0.2.10", "192.0.2.11")
	s.SetA("b.example.test", "192.0.2.20")
	s.SetAAAA("c.example.test", "2001:db8::c")

	seen := map[string]int{}
	for range 200 {
		hosts, err := r.Route(t.Context(), "Example.Test.")
		if err != nil {
			t.Fatal(err)
		}
		got := names(hosts)
		seen[strings.Join(got, ",")]++
		if len(got) != 3 || got[2] != "20 c.example.test" || !slices.Contains(got[:2], "10 a.example.test") || !slices.Contains(got[:2], "10 b.example.test") {
			t.Fatalf("Route = %q", got)
		}
	}
	if len(seen) != 2 {
		t.Errorf("orders seen in 200 routes: %v; want both orders of the preference-10 pair", seen)
	}
	hosts, _ := r.Route(t.Context(), "example.test")
	for _, h := range hosts {
		want := map[string][]netip.Addr{
			"a.example.test": {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8::a")},
			"b.example.test": {netip.MustParseAddr("192.0.2.20")},
			"c.example.test": {netip.MustParseAddr("2001:db8::c")},
		}[h.Name]
		if !slices.Equal(h.IPs, want) {
			t.Errorf("%s: IPs = %v, want %v (IPv4 first)", h.Name, h.IPs, want)
		}
	}
	// 201 routes, one query each: the cache answered the rest.
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"example.test", dns.TypeMX}, {"a.example.test", dns.TypeA}, {"gone.example.test", dns.TypeAAAA}} {
		if n := s.Queries(q.name, q.qtype); n != 1 {
			t.Errorf("%s %s: %d queries, want 1", q.name, dns.TypeToString[q.qtype], n)
		}
	}
}

func TestRouteOutcomes(t *testing.T) {
	s, r := setup(t)
	s.SetA("implicit.test", "192.0.2.1")
	s.SetAAAA("implicit.test", "2001:db8::1")
	s.SetMX("null.test", dnstest.MX{Pref: 0, Host: "."})
	s.SetMX("nullmixed.test", dnstest.MX{Pref: 0, Host: "."}, dnstest.MX{Pref: 10, Host: "mx.nullmixed.test"})
	s.SetA("mx.nullmixed.test", "192.0.2.2")
	s.SetTXT("txtonly.test", "v=spf1 -all")
	s.SetServFail("servfail.test")
	s.SetMX("mxnx.test", dnstest.MX{Pref: 10, Host: "a.nowhere.test"}, dnstest.MX{Pref: 20, Host: "b.nowhere.test"})
	s.SetMX("mxnodata.test", dnstest.MX{Pref: 10, Host: "txtonly.test"})
	s.SetMX("mxsf.test", dnstest.MX{Pref: 10, Host: "a.nowhere.test"}, dnstest.MX{Pref: 20, Host: "sf.mxsf.test"})
	s.SetServFail("sf.mxsf.test")
	s.SetMX("mxpartial.test", dnstest.MX{Pref: 10, Host: "sf.mxsf.test"}, dnstest.MX{Pref: 20, Host: "mx.nullmixed.test"})

	cases := []struct {
		domain string
		want   []string // hosts, when no error
		code   int
		status string
		cause  error
	}{
		{domain: "implicit.test", want: []string{"0 implicit.test"}},
		{domain: "nullmixed.test", want: []string{"10 mx.nullmixed.test"}},
		{domain: "mxpartial.test", want: []string{"20 mx.nullmixed.test"}},
		{domain: "null.test", code: 556, status: "5.1.10", cause: ErrNullMX},
		{domain: "nx.test", code: 550, status: "5.1.2", cause: ErrNXDomain},
		{domain: "txtonly.test", code: 550, status: "5.1.2", cause: ErrNoAddress},
		{domain: "servfail.test", code: 451, status: "4.4.3", cause: ErrServer},
		{domain: "mxnx.test", code: 550, status: "5.1.2", cause: ErrNXDomain},
		{domain: "mxnodata.test", code: 550, status: "5.1.2", cause: ErrNoAddress},
		{domain: "mxsf.test", code: 451, status: "4.4.3", cause: ErrServer},
		{domain: "bad..name", code: 550, status: "5.1.3", cause: ErrBadName},
	}
	for _, c := range cases {
		t.Run(c.domain, func(t *testing.T) {
			hosts, err := r.Route(t.Context(), c.domain)
			if c.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got := names(hosts); !slices.Equal(got, c.want) {
					t.Errorf("Route = %q, want %q", got, c.want)
				}
				return
			}
			if hosts != nil {
				t.Errorf("hosts = %v with an error", hosts)
			}
			wantReply(t, err, c.code, c.status, c.cause)
			var re *reply.Error
			if errors.As(err, &re) && re.Permanent() != (c.code >= 500) {
				t.Errorf("Permanent() = %v", re.Permanent())
			}
		})
	}
	hosts, _ := r.Route(t.Context(), "implicit.test")
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}; len(hosts) != 1 || !slices.Equal(hosts[0].IPs, want) {
		t.Errorf("implicit MX = %+v, want IPs %v", hosts, want)
	}
}

func TestTimeout(t *testing.T) {
	s := dnstest.Start(t)
	s.SetDrop("slow.test")
	r := newResolver(t, Config{Servers: []string{s.Addr()}, Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := r.Route(t.Context(), "slow.test")
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("took %v with a 200ms timeout", d)
	}
	wantReply(t, err, 451, "4.4.3", nil)
	if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("cause = %v, want a timeout", err.(*reply.Error).Err)
	}
	if n := s.Queries("slow.test", dns.TypeMX); n != 1 {
		t.Errorf("%d queries, want 1 (one attempt, one server)", n)
	}
}

func TestContextCanceled(t *testing.T) {
	s, r := setup(t)
	s.SetA("h.test", "192.0.2.1")
	s.SetDelay("h.test", 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.LookupIP(ctx, "h.test")
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("returned after %v, want soon after the context ended", d)
	}
	wantReply(t, err, 451, "4.4.3", context.DeadlineExceeded)
	// The shared query went on without the caller and filled the cache.
	ips, err := r.LookupIP(t.Context(), "h.test")
	if err != nil || len(ips) != 1 {
		t.Fatalf("LookupIP = %v, %v", ips, err)
	}
	if n := s.Queries("h.test", dns.TypeA); n != 1 {
		t.Errorf("%d A queries, want 1", n)
	}
}

func TestServerFailover(t *testing.T) {
	bad, good := dnstest.Start(t), dnstest.Start(t)
	for _, s := range []*dnstest.Server{bad, good} {
		s.SetMX("f.test", dnstest.MX{Pref: 10, Host: "mx.f.test"})
		s.SetA("mx.f.test", "192.0.2.1")
	}
	bad.SetServFail("f.test")
	bad.SetDrop("mx.f.test")
	r := newResolver(t, Config{Servers: []string{bad.Addr(), good.Addr()}, Timeout: 200 * time.Millisecond})
	hosts, err := r.Route(t.Context(), "f.test")
	if err != nil || len(hosts) != 1 || len(hosts[0].IPs) != 1 {
		t.Fatalf("Route = %+v, %v", hosts, err)
	}
	for _, s := range []*dnstest.Server{bad, good} {
		if n := s.Queries("f.test", dns.TypeMX); n != 1 {
			t.Errorf("%s: %d MX queries, want 1", s.Addr(), n)
		}
	}
}

func TestTCPFallback(t *testing.T) {
	s, r := setup(t)
	var mx []dnstest.MX
	for i := range 60 {
		host := fmt.Sprintf("mx%02d-%s.big.test", i, strings.Repeat("x", 30))
		mx = append(mx, dnstest.MX{Pref: uint16(i), Host: host})
		s.SetA(host, fmt.Sprintf("192.0.2.%d", i+1))
	}
	s.SetMX("big.test", mx...)
	hosts, err := r.Route(t.Context(), "big.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 60 {
		t.Fatalf("%d hosts, want 60", len(hosts))
	}
	for i, h := range hosts {
		if int(h.Pref) != i || h.IPs[0] != netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i+1)) {
			t.Errorf("hosts[%d] = %+v", i, h)
		}
	}
	if n := s.Queries("big.test", dns.TypeMX); n != 2 {
		t.Errorf("%d MX queries, want 2 (UDP truncated, then TCP)", n)
	}
}

func TestCacheExpiry(t *testing.T) {
	clk := newClock()
	s, r := setup(t, WithClock(clk.now))
	s.SetTTL(60)
	s.SetMX("c.test", dnstest.MX{Pref: 10, Host: "mx.c.test"})
	s.SetA("mx.c.test", "192.0.2.1")
	route := func() {
		t.Helper()
		if _, err := r.Route(t.Context(), "c.test"); err != nil {
			t.Fatal(err)
		}
	}
	queries := func(want int) {
		t.Helper()
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} { // AAAA: a cached NODATA
			if n := s.Queries("mx.c.test", qt); n != want {
				t.Errorf("%s: %d queries, want %d", dns.TypeToString[qt], n, want)
			}
		}
		if n := s.Queries("c.test", dns.TypeMX); n != want {
			t.Errorf("MX: %d queries, want %d", n, want)
		}
	}
	route()
	route()
	queries(1)
	clk.advance(59 * time.Second)
	route()
	queries(1)
	clk.advance(time.Second) // TTL 60 reached
	route()
	queries(2)

	// TTL 0: not cached at all (RFC 1035 §3.2.1).
	s.SetTTL(0)
	clk.advance(time.Hour)
	route()
	route()
	queries(4)
}

func TestNegativeAndFailureCache(t *testing.T) {
	clk := newClock()
	s, r := setup(t, WithClock(clk.now))
	s.SetTTL(30)
	_, err := r.LookupMX(t.Context(), "later.test")
	wantReply(t, err, 550, "5.1.2", ErrNXDomain)
	s.SetMX("later.test", dnstest.MX{Pref: 1, Host: "mx.later.test"})
	_, err = r.LookupMX(t.Context(), "later.test")
	wantReply(t, err, 550, "5.1.2", ErrNXDomain) // still the cached NXDOMAIN
	clk.advance(30 * time.Second)                // SOA minimum reached (RFC 2308 §5)
	if mxs, err := r.LookupMX(t.Context(), "later.test"); err != nil || len(mxs) != 1 {
		t.Fatalf("LookupMX = %v, %v", mxs, err)
	}

	s.SetServFail("flaky.test")
	_, err = r.LookupMX(t.Context(), "flaky.test")
	wantReply(t, err, 451, "4.4.3", ErrServer)
	s.Reset("flaky.test")
	s.SetMX("flaky.test", dnstest.MX{Pref: 1, Host: "mx.flaky.test"})
	_, err = r.LookupMX(t.Context(), "flaky.test")
	wantReply(t, err, 451, "4.4.3", ErrServer) // failures are remembered briefly
	clk.advance(failureTTL)
	if _, err := r.LookupMX(t.Context(), "flaky.test"); err != nil {
		t.Fatal(err)
	}
	if n := s.Queries("flaky.test", dns.TypeMX); n != 2 {
		t.Errorf("%d queries, want 2", n)
	}
}

func TestSingleflight(t *testing.T) {
	s, r := setup(t)
	s.SetTTL(0) // nothing is cached: only sharing can keep it to one query
	s.SetMX("sf.test", dnstest.MX{Pref: 10, Host: "mx.sf.test"})
	s.SetA("mx.sf.test", "192.0.2.1")
	s.SetDelay("sf.test", 100*time.Millisecond)
	s.SetDelay("mx.sf.test", 100*time.Millisecond)

	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			<-start
			if hosts, err := r.Route(t.Context(), "sf.test"); err != nil || len(hosts) != 1 {
				t.Errorf("Route = %v, %v", hosts, err)
			}
		})
	}
	close(start)
	wg.Wait()
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"sf.test", dns.TypeMX}, {"mx.sf.test", dns.TypeA}, {"mx.sf.test", dns.TypeAAAA}} {
		if n := s.Queries(q.name, q.qtype); n != 1 {
			t.Errorf("%s %s: %d queries for 50 concurrent routes, want 1", q.name, dns.TypeToString[q.qtype], n)
		}
	}
}

func TestLookupTXT(t *testing.T) {
	s, r := setup(t)
	long := strings.Repeat("p", 400)
	s.SetTXT("sel._domainkey.example.test", "v=DKIM1; k=rsa; p="+long)
	txts, err := r.LookupTXT(t.Context(), "sel._domainkey.example.test")
	if err != nil || len(txts) != 1 || txts[0] != "v=DKIM1; k=rsa; p="+long {
		t.Errorf("LookupTXT = %q, %v", txts, err)
	}
	if txts, err := r.LookupTXT(t.Context(), "example.test"); err != nil || len(txts) != 0 {
		t.Errorf("LookupTXT(empty non-terminal) = %q, %v; want NODATA", txts, err)
	}
	_, err = r.LookupTXT(t.Context(), "nx.test")
	wantReply(t, err, 550, "5.1.2", ErrNXDomain)
}

func TestLookupMXRaw(t *testing.T) {
	s, r := setup(t)
	s.SetMX("raw.test", dnstest.MX{Pref: 0, Host: "."}, dnstest.MX{Pref: 5, Host: "MX.Raw.Test."})
	mxs, err := r.LookupMX(t.Context(), "RAW.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []MX{{Host: ".", Pref: 0}, {Host: "mx.raw.test", Pref: 5}}
	if !slices.Equal(mxs, want) {
		t.Errorf("LookupMX = %v, want %v", mxs, want)
	}
	mxs[0].Host = "changed" // callers own what they get
	if again, _ := r.LookupMX(t.Context(), "raw.test"); !slices.Equal(again, want) {
		t.Errorf("cache altered through a returned slice: %v", again)
	}
}

// BenchmarkRouteCached measures Route when every answer is cached: the cost
// delivery pays per message once a domain is warm.
func BenchmarkRouteCached(b *testing.B) {
	s := dnstest.Start(b)
	s.SetMX("bench.test", dnstest.MX{Pref: 10, Host: "mx1.bench.test"}, dnstest.MX{Pref: 10, Host: "mx2.bench.test"})
	s.SetA("mx1.bench.test", "192.0.2.1")
	s.SetA("mx2.bench.test", "192.0.2.2")
	r, err := New(Config{Servers: []string{s.Addr()}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Route(context.Background(), "bench.test"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRouteUncached measures a cold Route over loopback UDP: one MX
// query and an A and AAAA query per host (the cache is bypassed with TTL 0).
func BenchmarkRouteUncached(b *testing.B) {
	s := dnstest.Start(b)
	s.SetTTL(0)
	s.SetMX("bench.test", dnstest.MX{Pref: 10, Host: "mx1.bench.test"}, dnstest.MX{Pref: 20, Host: "mx2.bench.test"})
	s.SetA("mx1.bench.test", "192.0.2.1")
	s.SetA("mx2.bench.test", "192.0.2.2")
	r, err := New(Config{Servers: []string{s.Addr()}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Route(context.Background(), "bench.test"); err != nil {
			b.Fatal(err)
		}
	}
}
