package mtasts

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/dns"
	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/testenv"
)

const enforcePolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n"

// setup starts a DNS server, a policy server on 127.41.0.1 with a test CA,
// and a cache that trusts the CA and resolves through the DNS server.
func setup(t *testing.T, domains ...string) (*dnstest.Server, *testenv.PolicyServer, *Cache, *time.Time) {
	t.Helper()
	ds := dnstest.Start(t)
	ds.SetTTL(1)
	ca := testenv.NewCA(t)
	ps := testenv.StartPolicyServer(t, "127.41.0.1:0", ca, domains...)
	for _, d := range domains {
		ds.SetA("mta-sts."+d, "127.41.0.1")
	}
	res, err := dns.New(dns.Config{Servers: []string{ds.Addr()}, Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	_, port, _ := splitPort(ps.Addr)
	c := New(Options{Resolver: res, RootCAs: ca.Pool(), Port: port, Timeout: 3 * time.Second, Now: func() time.Time { return now }})
	t.Cleanup(c.Close)
	return ds, ps, c, &now
}

func splitPort(addr string) (string, int, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			n, err := strconv.Atoi(addr[i+1:])
			return addr[:i], n, err
		}
	}
	return addr, 0, nil
}

func TestCacheFetchAndID(t *testing.T) {
	ds, ps, c, _ := setup(t, "sts.test")
	ctx := context.Background()
	if p, err := c.Get(ctx, "none.test"); p != nil || err != nil {
		t.Fatalf("no TXT record: Get = %v, %v; want no policy", p, err)
	}
	ds.SetTXT("_mta-sts.sts.test", "v=STSv1; id=one;")
	ps.Set("sts.test", enforcePolicy)
	p, err := c.Get(ctx, "sts.test")
	if err != nil || p == nil || p.Mode != Enforce || p.ID != "one" || !p.Match("mx.sts.test") {
		t.Fatalf("Get = %+v, %v", p, err)
	}
	if _, err := c.Get(ctx, "sts.test"); err != nil || ps.Fetches("sts.test") != 1 {
		t.Errorf("same id refetched: %d fetches, err %v", ps.Fetches("sts.test"), err)
	}
	// A new id means a new policy (RFC 8461 §3.1).
	ps.Set("sts.test", "version: STSv1\nmode: testing\nmx: mx2.sts.test\nmax_age: 86400\n")
	ds.SetTXT("_mta-sts.sts.test", "v=STSv1; id=two;")
	time.Sleep(1100 * time.Millisecond) // the resolver's cache: TTL 1s
	p, err = c.Get(ctx, "sts.test")
	if err != nil || p.ID != "two" || p.Mode != Testing || ps.Fetches("sts.test") != 2 {
		t.Fatalf("after id change: %+v, %v, %d fetches", p, err, ps.Fetches("sts.test"))
	}
	// The policy outlives its TXT record until max_age (RFC 8461 §5.1).
	ds.Reset("_mta-sts.sts.test")
	time.Sleep(1100 * time.Millisecond)
	if p, _ := c.Get(ctx, "sts.test"); p == nil || p.ID != "two" {
		t.Errorf("TXT removed: Get = %+v, want the cached policy", p)
	}
}

func TestCacheFailures(t *testing.T) {
	ds, ps, c, now := setup(t, "bad.test", "cert.test")
	ctx := context.Background()
	// 404: fail open, and no refetch for failRetry.
	ds.SetTXT("_mta-sts.bad.test", "v=STSv1; id=x1;")
	if p, err := c.Get(ctx, "bad.test"); p != nil || err == nil {
		t.Errorf("404: Get = %v, %v; want no policy and an error", p, err)
	}
	c.Get(ctx, "bad.test")
	if n := ps.Fetches("bad.test"); n != 1 {
		t.Errorf("failed fetch retried at once: %d fetches", n)
	}
	*now = now.Add(failRetry + time.Second)
	ps.Set("bad.test", "version: STSv1\nmode: enforce\nmx: mx.bad.test\nmax_age: 60\n")
	if p, err := c.Get(ctx, "bad.test"); p == nil || err != nil {
		t.Errorf("after failRetry: Get = %v, %v", p, err)
	}
	// Expiry: max_age 60 s passes, the same id is fetched again.
	*now = now.Add(61 * time.Second)
	c.Get(ctx, "bad.test")
	if n := ps.Fetches("bad.test"); n != 3 {
		t.Errorf("expired policy: %d fetches, want 3", n)
	}

	// A policy host whose certificate is not for mta-sts.<domain>.
	ds.SetTXT("_mta-sts.other.test", "v=STSv1; id=c1;")
	ds.SetA("mta-sts.other.test", "127.41.0.1")
	ps.Set("other.test", enforcePolicy)
	if p, err := c.Get(ctx, "other.test"); p != nil || err == nil {
		t.Errorf("wrong certificate name: Get = %v, %v; want an error", p, err)
	}
	// Two STS records: no policy (RFC 8461 §3.1).
	ds.SetTXT("_mta-sts.cert.test", "v=STSv1; id=a;", "v=STSv1; id=b;")
	ps.Set("cert.test", enforcePolicy)
	if p, _ := c.Get(ctx, "cert.test"); p != nil {
		t.Errorf("two TXT records: Get = %v, want none", p)
	}
}
