package dns

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"example.com", "example.com."},
		{"Example.COM.", "example.com."},
		{"_dmarc.example.com", "_dmarc.example.com."},
		{"bücher.example", "xn--bcher-kva.example."},
		{"BÜCHER.example", "xn--bcher-kva.example."},
		{"localhost", "localhost."},
		{"", ""},
		{".", ""},
		{"a..b", ""},
		{".a.b", ""},
		{"exa mple.com", ""},
		{"exa\\.mple.com", ""},
		{"a/b.com", ""},
		{strings.Repeat("a", 64) + ".com", ""},
		{strings.Repeat("abcdefghi.", 26) + "com", ""}, // 263 octets
	}
	for _, c := range cases {
		got, err := normalize(c.in)
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("normalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		if err != nil {
			wantReply(t, err, 550, "5.1.3", ErrBadName)
		}
	}
}

func TestParseServer(t *testing.T) {
	cases := []struct{ in, want string }{
		{"127.0.0.1:5353", "127.0.0.1:5353"},
		{"127.0.0.1", "127.0.0.1:53"},
		{"::1", "[::1]:53"},
		{"[::1]:5353", "[::1]:5353"},
		{"127.0.0.1:0", ""},
		{"localhost:53", ""},
		{"", ""},
	}
	for _, c := range cases {
		got, err := parseServer(c.in)
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("parseServer(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := New(Config{Servers: []string{"127.0.0.1:53", "nope"}}, nil); err == nil {
		t.Error("New accepted a malformed server")
	}
}

func TestNewDefaults(t *testing.T) {
	r, err := New(Config{Servers: []string{"127.0.0.1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.timeout != DefaultTimeout || r.attempts != DefaultAttempts || r.cache.max != DefaultCacheSize {
		t.Errorf("defaults: timeout %v attempts %d cache %d", r.timeout, r.attempts, r.cache.max)
	}
	if _, err := os.Stat(resolvConf); err != nil {
		t.Skipf("no %s: %v", resolvConf, err)
	}
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil || len(cc.Servers) == 0 {
		t.Skipf("%s has no usable servers: %v", resolvConf, err)
	}
	r, err = New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.servers) != len(cc.Servers) || !strings.HasSuffix(r.servers[0], ":"+cc.Port) {
		t.Errorf("servers from resolv.conf = %v, file has %v port %s", r.servers, cc.Servers, cc.Port)
	}
}

func TestCacheLRU(t *testing.T) {
	c := newCache(2)
	t0 := time.Unix(1000, 0)
	k := func(n string) cacheKey { return cacheKey{n, dns.TypeA} }
	a, b, d := &answer{}, &answer{nxdomain: true}, &answer{}
	c.put(k("a"), a, t0.Add(time.Minute))
	c.put(k("b"), b, t0.Add(time.Minute))
	if got, ok := c.get(k("a"), t0); !ok || got != a { // a is now the most recent
		t.Fatal("a missing")
	}
	c.put(k("d"), d, t0.Add(time.Minute)) // evicts b, the least recently used
	if _, ok := c.get(k("b"), t0); ok {
		t.Error("b survived eviction")
	}
	if c.len() != 2 {
		t.Errorf("len = %d, want 2", c.len())
	}
	if _, ok := c.get(k("d"), t0.Add(time.Minute)); ok {
		t.Error("d returned at its expiry time")
	}
	if c.len() != 1 {
		t.Errorf("expired entry kept: len = %d", c.len())
	}
	c.put(k("a"), b, t0.Add(2*time.Minute)) // replace in place
	if got, ok := c.get(k("a"), t0.Add(90*time.Second)); !ok || got != b {
		t.Error("replacement not stored")
	}
}

func msgOf(t *testing.T, rcode int, answer ...string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	m.Response, m.Rcode, m.RecursionAvailable = true, rcode, true
	for _, s := range answer {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	return m
}

func TestFollow(t *testing.T) {
	cases := []struct {
		name   string
		answer []string
		want   []string
		ttl    time.Duration
	}{
		{"plain", []string{"www.example.test. 300 IN A 192.0.2.1", "WWW.example.test. 200 IN A 192.0.2.2"},
			[]string{"192.0.2.1", "192.0.2.2"}, maxTTL},
		{"chain", []string{
			"www.example.test. 100 IN CNAME edge.cdn.test.",
			"edge.cdn.test. 50 IN CNAME Node.CDN.test.",
			"node.cdn.test. 300 IN A 192.0.2.7",
			"other.test. 300 IN A 192.0.2.99", // not on the chain
		}, []string{"192.0.2.7"}, 50 * time.Second},
		{"dangling chain", []string{"www.example.test. 100 IN CNAME edge.cdn.test."}, nil, 100 * time.Second},
		{"loop", []string{"www.example.test. 100 IN CNAME a.test.", "a.test. 100 IN CNAME www.example.test."}, nil, 100 * time.Second},
		{"unrelated", []string{"other.test. 300 IN A 192.0.2.99"}, nil, maxTTL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rrs, ttl := follow(msgOf(t, dns.RcodeSuccess, c.answer...), "www.example.test.", dns.TypeA)
			var got []string
			for _, rr := range rrs {
				got = append(got, rr.(*dns.A).A.String())
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") || ttl != c.ttl {
				t.Errorf("follow = %v, %v; want %v, %v", got, ttl, c.want, c.ttl)
			}
		})
	}
}

func TestNegativeTTL(t *testing.T) {
	soa := func(ttl, minimum uint32) *dns.Msg {
		m := msgOf(t, dns.RcodeNameError)
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns: "ns.", Mbox: "h.", Minttl: minimum}}
		return m
	}
	cases := []struct {
		m    *dns.Msg
		want time.Duration
	}{
		{soa(60, 300), time.Minute}, // the SOA's own TTL is smaller
		{soa(3600, 120), 2 * time.Minute},
		{soa(86400, 86400), maxNegTTL},    // capped
		{msgOf(t, dns.RcodeNameError), 0}, // no SOA: not cached
	}
	for i, c := range cases {
		if got := negativeTTL(c.m); got != c.want {
			t.Errorf("case %d: negativeTTL = %v, want %v", i, got, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	q := msgOf(t, dns.RcodeSuccess)
	q.Response = false
	referral := msgOf(t, dns.RcodeSuccess)
	referral.RecursionAvailable = false
	referral.Ns = []dns.RR{&dns.NS{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeNS, Class: dns.ClassINET}, Ns: "ns.test."}}
	other := msgOf(t, dns.RcodeSuccess)
	other.Question[0].Name = "evil.test."
	refused := msgOf(t, dns.RcodeRefused)
	for _, c := range []struct {
		name string
		resp *dns.Msg
		ok   bool
	}{
		{"noerror", msgOf(t, dns.RcodeSuccess), true},
		{"nxdomain", msgOf(t, dns.RcodeNameError), true},
		{"case differs", func() *dns.Msg { m := msgOf(t, 0); m.Question[0].Name = "WWW.Example.TEST."; return m }(), true},
		{"refused", refused, false},
		{"other question", other, false},
		{"referral", referral, false},
	} {
		err := check(q, c.resp)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrServer)) {
			t.Errorf("%s: check = %v, want ok %v", c.name, err, c.ok)
		}
	}
}
