package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/sluice-mta/sluice/engine/dns"
)

// Resolver is the DNS the cache needs: the TXT record, and the policy
// host's addresses (so tests resolve through their own DNS server).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
}

// Options configure a Cache.
type Options struct {
	Resolver Resolver
	RootCAs  *x509.CertPool // roots for the policy host's certificate; nil: the system's
	Port     int            // HTTPS port of policy hosts [443]; tests use another
	Timeout  time.Duration  // one discovery and fetch [10s]
	Log      *zap.Logger
	Now      func() time.Time
}

// failRetry is how long a failed fetch is remembered before the next try,
// so that a domain with a broken policy host is not fetched per message.
const failRetry = 5 * time.Minute

// maxEntries bounds the cache; past it, expired entries go, then random ones.
const maxEntries = 20000

type entry struct {
	pol      *Policy   // nil: none known
	expires  time.Time // pol's end (fetch time + max_age)
	failedAt time.Time // last failed fetch
	failErr  error
}

// Cache holds policies by domain (RFC 8461 §5.1). It is safe for
// concurrent use; lookups of one domain share one fetch.
type Cache struct {
	opts   Options
	client *http.Client
	group  singleflight.Group

	mu      sync.Mutex
	entries map[string]*entry
}

// New returns an empty cache.
func New(opts Options) *Cache {
	if opts.Port == 0 {
		opts.Port = 443
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Cache{opts: opts, entries: map[string]*entry{}}
	tr := &http.Transport{
		Proxy:                  nil, // the policy host is fetched directly
		DialContext:            c.dialPolicyHost,
		TLSClientConfig:        &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		DisableKeepAlives:      true, // a fetch per domain per max_age: nothing to keep
		TLSHandshakeTimeout:    opts.Timeout,
		MaxResponseHeaderBytes: 16 << 10,
	}
	c.client = &http.Client{
		Transport: tr,
		Timeout:   opts.Timeout,
		// RFC 8461 §3.3: redirects must not be followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c
}

// dialPolicyHost resolves the policy host through the Resolver and dials
// it on the configured port (the URL's own port is ignored).
func (c *Cache) dialPolicyHost(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := c.opts.Resolver.LookupIP(ctx, host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	var lastErr error = fmt.Errorf("mtasts: %s has no address", host)
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(c.opts.Port)))
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// Get returns domain's policy, or nil when it has none (or none could be
// had: RFC 8461 §5 fails open when discovery fails and nothing is cached).
// A non-nil error explains a missing policy worth logging; the policy
// returned beside it, if any, is the cached one still in force.
func (c *Cache) Get(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	v, err, _ := c.group.Do(domain, func() (any, error) {
		return c.get(ctx, domain)
	})
	p, _ := v.(*Policy)
	return p, err
}

func (c *Cache) get(ctx context.Context, domain string) (*Policy, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	now := c.opts.Now()
	c.mu.Lock()
	e := c.entries[domain]
	var cached *Policy
	if e != nil && e.pol != nil && now.Before(e.expires) {
		cached = e.pol
	}
	c.mu.Unlock()

	id, err := c.lookupID(ctx, domain)
	switch {
	case err != nil && cached != nil:
		return cached, nil // RFC 8461 §5.1: a cached policy outlives a DNS failure
	case err != nil:
		return nil, err
	case id == "":
		// RFC 8461 §5.1: no record; a cached policy stays until max_age.
		return cached, nil
	case cached != nil && cached.ID == id:
		return cached, nil
	}
	if e != nil && e.pol == nil && !e.failedAt.IsZero() && now.Sub(e.failedAt) < failRetry {
		return nil, e.failErr
	}
	p, err := c.fetch(ctx, domain)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trimLocked(now)
	if err != nil {
		c.opts.Log.Info("mta-sts policy fetch failed", zap.String("domain", domain), zap.Error(err))
		if cached != nil {
			return cached, nil // keep the policy in force until it expires
		}
		c.entries[domain] = &entry{failedAt: now, failErr: err}
		return nil, err
	}
	p.ID = id
	c.entries[domain] = &entry{pol: p, expires: now.Add(p.MaxAge)}
	return p, nil
}

// lookupID returns the id of domain's MTA-STS TXT record, or "" when it has
// none (NXDOMAIN, no record, or several: RFC 8461 §3.1).
func (c *Cache) lookupID(ctx context.Context, domain string) (string, error) {
	txts, err := c.opts.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	if errors.Is(err, dns.ErrNXDomain) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var ids []string
	for _, t := range txts {
		id, ok, err := parseTXT(t)
		if !ok {
			continue
		}
		if err != nil {
			return "", err
		}
		ids = append(ids, id)
	}
	if len(ids) != 1 {
		return "", nil
	}
	return ids[0], nil
}

// fetch gets the policy over HTTPS (RFC 8461 §3.3): the certificate must
// be valid for mta-sts.<domain>, the answer a 200 with text/plain.
func (c *Cache) fetch(ctx context.Context, domain string) (*Policy, error) {
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mtasts: %s: HTTP status %d", url, resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("mtasts: %s: content type %q, want text/plain", url, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicyBytes+1))
	if err != nil {
		return nil, err
	}
	return Parse(body)
}

// trimLocked keeps the cache under maxEntries.
func (c *Cache) trimLocked(now time.Time) {
	if len(c.entries) < maxEntries {
		return
	}
	for d, e := range c.entries {
		if e.pol == nil && now.Sub(e.failedAt) >= failRetry || e.pol != nil && !now.Before(e.expires) {
			delete(c.entries, d)
		}
	}
	for d := range c.entries { // map order is random enough
		if len(c.entries) < maxEntries*9/10 {
			break
		}
		if rand.IntN(2) == 0 {
			delete(c.entries, d)
		}
	}
}

// Close releases idle connections.
func (c *Cache) Close() { c.client.CloseIdleConnections() }
