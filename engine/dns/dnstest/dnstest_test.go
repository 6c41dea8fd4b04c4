package dnstest_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ask sends one query over net ("udp" or "tcp"), with EDNS0 when edns > 0.
func ask(t *testing.T, s *dnstest.Server, network, name string, qtype uint16, edns uint16) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addr())
	return r, err
}

func mustAsk(t *testing.T, s *dnstest.Server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	r, err := ask(t, s, "udp", name, qtype, 1232)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return r
}

// rdata renders the answer section as "TYPE data" strings, sorted.
func rdata(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(f[3:], " "))
	}
	slices.Sort(out)
	return out
}

func TestAnswers(t *testing.T) {
	s := dnstest.Start(t)
	s.SetMX("Example.TEST", dnstest.MX{Pref: 10, Host: "MX1.example.test"}, dnstest.MX{Pref: 20, Host: "mx2.example.test."})
	s.SetA("mx1.example.test.", "192.0.2.1", "192.0.2.2")
	s.SetAAAA("mx1.example.test", "2001:db8::1")
	s.SetTXT("example.test", "v=spf1 -all", strings.Repeat("k", 300))
	s.SetMX("null.test", dnstest.MX{Pref: 0, Host: "."})
	s.SetA("a.b.ent.test", "192.0.2.9")

	cases := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
		soa   bool
	}{
		{"example.test.", dns.TypeMX, dns.RcodeSuccess, []string{"MX 10 mx1.example.test.", "MX 20 mx2.example.test."}, false},
		{"EXAMPLE.test", dns.TypeMX, dns.RcodeSuccess, []string{"MX 10 mx1.example.test.", "MX 20 mx2.example.test."}, false},
		{"mx1.example.test", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.1", "A 192.0.2.2"}, false},
		{"mx1.example.test", dns.TypeAAAA, dns.RcodeSuccess, []string{"AAAA 2001:db8::1"}, false},
		{"example.test", dns.TypeTXT, dns.RcodeSuccess, []string{
			`TXT "` + strings.Repeat("k", 255) + `" "` + strings.Repeat("k", 45) + `"`, `TXT "v=spf1 -all"`}, false},
		{"null.test", dns.TypeMX, dns.RcodeSuccess, []string{"MX 0 ."}, false},
		{"example.test", dns.TypeA, dns.RcodeSuccess, nil, true},       // NODATA
		{"mx1.example.test", dns.TypeMX, dns.RcodeSuccess, nil, true},  // NODATA
		{"mx2.example.test", dns.TypeA, dns.RcodeNameError, nil, true}, // only named as an exchange
		{"nothing.test", dns.TypeMX, dns.RcodeNameError, nil, true},    // NXDOMAIN
		{"b.ent.test", dns.TypeA, dns.RcodeSuccess, nil, true},         // empty non-terminal (RFC 8020)
		{"ent.test", dns.TypeMX, dns.RcodeSuccess, nil, true},          // empty non-terminal
		{"x.a.b.ent.test", dns.TypeA, dns.RcodeNameError, nil, true},   // below an existing name
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s", c.name, dns.TypeToString[c.qtype]), func(t *testing.T) {
			r := mustAsk(t, s, dns.Fqdn(c.name), c.qtype)
			if r.Rcode != c.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
			}
			if !r.Authoritative {
				t.Error("AA not set")
			}
			if got := rdata(r.Answer); !slices.Equal(got, c.want) {
				t.Errorf("answer = %q, want %q", got, c.want)
			}
			gotSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
			if gotSOA != c.soa {
				t.Errorf("authority = %v, want SOA: %v", r.Ns, c.soa)
			}
			if r.IsEdns0() == nil {
				t.Error("no OPT in the answer to an EDNS0 query")
			}
			for _, rr := range r.Answer {
				if rr.Header().Name != dns.Fqdn(c.name) {
					t.Errorf("owner %q, want the question's %q", rr.Header().Name, dns.Fqdn(c.name))
				}
			}
		})
	}
}

func TestReplaceAndRemove(t *testing.T) {
	s := dnstest.Start(t)
	s.SetMX("d.test", dnstest.MX{Pref: 1, Host: "a.d.test"})
	s.SetMX("d.test", dnstest.MX{Pref: 2, Host: "b.d.test"})
	if got := rdata(mustAsk(t, s, "d.test.", dns.TypeMX).Answer); !slices.Equal(got, []string{"MX 2 b.d.test."}) {
		t.Errorf("after replace: %q", got)
	}
	s.SetMX("d.test") // removes the set; no records left → NXDOMAIN
	if r := mustAsk(t, s, "d.test.", dns.TypeMX); r.Rcode != dns.RcodeNameError {
		t.Errorf("after removal: rcode %s", dns.RcodeToString[r.Rcode])
	}
	s.SetA("d.test", "192.0.2.1")
	s.Reset("d.test")
	if r := mustAsk(t, s, "d.test.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("after Reset: rcode %s", dns.RcodeToString[r.Rcode])
	}
}

func TestTTL(t *testing.T) {
	s := dnstest.Start(t)
	s.SetA("h.test", "192.0.2.1")
	if r := mustAsk(t, s, "h.test.", dns.TypeA); r.Answer[0].Header().Ttl != 300 {
		t.Errorf("default TTL = %d", r.Answer[0].Header().Ttl)
	}
	s.SetTTL(42)
	if r := mustAsk(t, s, "h.test.", dns.TypeA); r.Answer[0].Header().Ttl != 42 {
		t.Errorf("TTL = %d, want 42", r.Answer[0].Header().Ttl)
	}
	r := mustAsk(t, s, "h.test.", dns.TypeMX)
	if soa := r.Ns[0].(*dns.SOA); soa.Minttl != 42 || soa.Hdr.Ttl != 42 {
		t.Errorf("SOA TTL/minimum = %d/%d, want 42", soa.Hdr.Ttl, soa.Minttl)
	}
}

func TestFaults(t *testing.T) {
	s := dnstest.Start(t)
	s.SetA("sf.test", "192.0.2.1")
	s.SetServFail("SF.test.")
	if r := mustAsk(t, s, "sf.test.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode = %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}

	s.SetDrop("drop.test")
	for _, network := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion("drop.test.", dns.TypeA)
		c := &dns.Client{Net: network, Timeout: 150 * time.Millisecond}
		_, _, err := c.Exchange(m, s.Addr())
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%s: dropped query: err = %v, want a timeout", network, err)
		}
	}
	if n := s.Queries("drop.test", dns.TypeA); n != 2 {
		t.Errorf("Queries(drop.test) = %d, want 2", n)
	}

	s.Reset("sf.test")
	s.Reset("drop.test")
	if r := mustAsk(t, s, "drop.test.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("after Reset: rcode = %s", dns.RcodeToString[r.Rcode])
	}
}

func TestDelay(t *testing.T) {
	s := dnstest.Start(t)
	s.SetA("slow.test", "192.0.2.1")
	s.SetDelay("slow.test", 100*time.Millisecond)
	start := time.Now()
	r := mustAsk(t, s, "slow.test.", dns.TypeA)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("answered after %v, want ≥ 100ms", d)
	}
	if len(r.Answer) != 1 {
		t.Errorf("answer = %v", r.Answer)
	}
}

func TestTCPAndTruncation(t *testing.T) {
	s := dnstest.Start(t)
	var mx []dnstest.MX
	for i := range 60 {
		mx = append(mx, dnstest.MX{Pref: 10, Host: fmt.Sprintf("mx%02d-%s.big.test", i, strings.Repeat("x", 30))})
	}
	s.SetMX("big.test", mx...)

	for _, c := range []struct {
		network string
		edns    uint16
		tc      bool
	}{
		{"udp", 0, true},    // 512 bytes without EDNS0
		{"udp", 1232, true}, // still too big
		{"udp", 4096, true}, // the server caps UDP at 1232
		{"tcp", 0, false},
		{"tcp", 1232, false},
	} {
		r, err := ask(t, s, c.network, "big.test.", dns.TypeMX, c.edns)
		if err != nil {
			t.Fatalf("%s edns=%d: %v", c.network, c.edns, err)
		}
		if r.Truncated != c.tc {
			t.Errorf("%s edns=%d: TC = %v, want %v", c.network, c.edns, r.Truncated, c.tc)
		}
		if !c.tc && len(r.Answer) != 60 {
			t.Errorf("%s: %d answers, want 60", c.network, len(r.Answer))
		}
		r.Compress = true // the server compresses; Len must count the same way
		if c.tc && r.Len() > max(512, min(int(c.edns), 1232)) {
			t.Errorf("%s edns=%d: %d-byte UDP answer", c.network, c.edns, r.Len())
		}
	}
	if n := s.Queries("BIG.test.", dns.TypeMX); n != 5 {
		t.Errorf("Queries = %d, want 5", n)
	}
	if n := s.Queries("big.test", dns.TypeA); n != 0 {
		t.Errorf("Queries(A) = %d, want 0", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := dnstest.Start(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				host := fmt.Sprintf("h%d.test", i)
				s.SetA(host, fmt.Sprintf("192.0.2.%d", j+1))
				if r, err := ask(t, s, "udp", host+".", dns.TypeA, 1232); err != nil || len(r.Answer) != 1 {
					t.Errorf("%s: %v %v", host, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range 8 {
		if n := s.Queries(fmt.Sprintf("h%d.test", i), dns.TypeA); n != 20 {
			t.Errorf("h%d: %d queries, want 20", i, n)
		}
	}
}

func TestListenClose(t *testing.T) {
	s, err := dnstest.Listen()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr = %q", s.Addr())
	}
	s.SetA("h.test", "192.0.2.1")
	s.SetDelay("h.test", time.Hour) // Close must not wait for it
	var wg sync.WaitGroup
	wg.Go(func() {
		m := new(dns.Msg)
		m.SetQuestion("h.test.", dns.TypeA)
		c := &dns.Client{Timeout: 300 * time.Millisecond}
		_, _, _ = c.Exchange(m, s.Addr())
	})
	for s.Queries("h.test", dns.TypeA) == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a query delayed", d)
	}
	s.Close() // idempotent
	wg.Wait()

	ln, err := net.Listen("tcp4", s.Addr()) // the port is free again
	if err != nil {
		t.Errorf("port still bound after Close: %v", err)
	} else {
		ln.Close()
	}
}

func TestBadAddressPanicsWithoutTB(t *testing.T) {
	s, err := dnstest.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, set := range []func(){
		func() { s.SetA("h.test", "2001:db8::1") },
		func() { s.SetAAAA("h.test", "192.0.2.1") },
		func() { s.SetA("h.test", "not-an-ip") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic for a bad address")
				}
			}()
			set()
		}()
	}
}
