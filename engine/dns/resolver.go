// Package dns finds where mail for a domain goes: its MX hosts in the order
// to try them, each with its addresses (RFC 5321 §5.1), or a reply.Error
// that says whether to bounce or retry. It is a stub resolver that asks the
// configured recursive servers over UDP, retrying over TCP when an answer is
// truncated (RFC 7766 §5), with EDNS0 (RFC 6891) and a 1232-byte buffer.
//
// Answers are cached for their TTL (RFC 1035 §3.2.1), negative answers for
// the SOA minimum (RFC 2308 §5), failures briefly; identical concurrent
// lookups share one query. Names are compared as lower-case FQDNs
// (RFC 4343 §3) and returned lower-case without the trailing dot.
package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout   = 5 * time.Second
	DefaultAttempts  = 2 // as resolv.conf's "options attempts" (resolv.conf(5))
	DefaultCacheSize = 10000
)

// ednsSize is the UDP payload size we advertise (RFC 6891 §6.2.5); 1232
// bytes avoids IP fragmentation on common paths (DNS Flag Day 2020).
const ednsSize = 1232

// Cache lifetimes.
const (
	maxTTL      = time.Hour       // cap on positive answers; MX sets rarely change faster than we requeue
	maxNegTTL   = 5 * time.Minute // cap on NXDOMAIN/NODATA (RFC 2308 §5 allows up to hours; we recheck sooner)
	failureTTL  = 5 * time.Second // SERVFAIL, timeouts: remembered only to absorb bursts (RFC 2308 §7.1)
	resolvConf  = "/etc/resolv.conf"
	defaultPort = "53"
)

// Errors wrapped as the cause of the reply.Errors this package returns, for
// errors.Is.
var (
	// ErrNXDomain: the name does not exist (RCODE 3, RFC 1035 §4.1.1).
	ErrNXDomain = errors.New("no such domain")
	// ErrNoAddress: neither MX nor address records lead to a mail server.
	ErrNoAddress = errors.New("no address records")
	// ErrNullMX: the domain publishes a null MX (RFC 7505).
	ErrNullMX = errors.New("null MX")
	// ErrBadName: the name is not a valid domain name.
	ErrBadName = errors.New("invalid domain name")
	// ErrServer: a server answered with an RCODE other than NOERROR or
	// NXDOMAIN, or with something that is not an answer.
	ErrServer = errors.New("server failure")
)

// Config says which recursive servers to ask and how long to wait.
type Config struct {
	// Servers are "ip:port" addresses (a bare IP means port 53), asked in
	// order until one answers. Empty: the nameservers of /etc/resolv.conf.
	Servers []string
	// Timeout bounds one query to one server (and its TCP retry).
	// Zero: resolv.conf's timeout when Servers is empty, else DefaultTimeout.
	Timeout time.Duration
	// Attempts is how many times the whole server list is tried. Zero:
	// resolv.conf's attempts when Servers is empty, else DefaultAttempts.
	Attempts int
	// CacheSize caps the cached answers (one per name and type); the least
	// recently used go first. Zero: DefaultCacheSize.
	CacheSize int
}

// Option changes a Resolver built by New.
type Option func(*Resolver)

// WithClock makes the cache read time from now instead of time.Now, so that
// tests can expire entries without sleeping.
func WithClock(now func() time.Time) Option {
	return func(r *Resolver) { r.now = now }
}

// Resolver looks up MX, A, AAAA and TXT records with a cache. It is safe for
// concurrent use and owns no goroutines between calls.
type Resolver struct {
	servers  []string
	timeout  time.Duration
	attempts int
	log      *zap.Logger
	now      func() time.Time
	udp      *dns.Client
	tcp      *dns.Client
	cache    *cache
	flight   singleflight.Group
}

// New returns a Resolver for cfg. It reads /etc/resolv.conf when
// cfg.Servers is empty, and fails when a server address is malformed or no
// server is known. log may be nil.
func New(cfg Config, log *zap.Logger, opts ...Option) (*Resolver, error) {
	if log == nil {
		log = zap.NewNop()
	}
	servers := make([]string, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		addr, err := parseServer(s)
		if err != nil {
			return nil, err
		}
		servers = append(servers, addr)
	}
	timeout, attempts := cfg.Timeout, cfg.Attempts
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile(resolvConf)
		if err != nil {
			return nil, fmt.Errorf("dns: no servers configured and %w", err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
		if timeout == 0 && cc.Timeout > 0 {
			timeout = time.Duration(cc.Timeout) * time.Second
		}
		if attempts == 0 && cc.Attempts > 0 {
			attempts = cc.Attempts
		}
		if len(servers) == 0 {
			return nil, fmt.Errorf("dns: no servers configured and none in %s", resolvConf)
		}
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	size := cfg.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	r := &Resolver{
		servers:  servers,
		timeout:  timeout,
		attempts: attempts,
		log:      log,
		now:      time.Now,
		udp:      &dns.Client{Net: "udp", UDPSize: ednsSize, Timeout: timeout},
		tcp:      &dns.Client{Net: "tcp", Timeout: timeout},
		cache:    newCache(size),
	}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// parseServer accepts "ip:port", "[ipv6]:port" or a bare IP (port 53).
func parseServer(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", fmt.Errorf("dns: server %q: port 0", s)
		}
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(a.String(), defaultPort), nil
	}
	return "", fmt.Errorf("dns: server %q: want ip:port", s)
}

// typeName renders a query type for errors and logs.
func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}
