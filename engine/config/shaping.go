package config

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Rate is a count per period, PowerMTA's "N/s", "N/m", "N/h", "N/d", or
// "unlimited" (the zero Rate).
type Rate struct {
	N   int
	Per time.Duration
}

// Unlimited reports whether the rate sets no limit.
func (r Rate) Unlimited() bool { return r.N <= 0 || r.Per <= 0 }

// ParseRate parses "100/h" or "unlimited".
func ParseRate(s string) (Rate, error) {
	if s == "unlimited" {
		return Rate{}, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[unit]
	v, err := strconv.Atoi(n)
	if !ok || per == 0 || err != nil || v <= 0 {
		return Rate{}, fmt.Errorf("%q is not a rate: use N/s, N/m, N/h, N/d or \"unlimited\"", s)
	}
	return Rate{N: v, Per: per}, nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	*r = v
	return err
}

// MarshalText renders the rate as it is written.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String renders "100/h" or "unlimited".
func (r Rate) String() string {
	if r.Unlimited() {
		return "unlimited"
	}
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h", 24 * time.Hour: "d"}[r.Per]
	return fmt.Sprintf("%d/%s", r.N, unit)
}

// MXRollup groups every domain whose MX hosts end in one of MXSuffix into
// one site, named after the table: one queue per VMTA and one set of limits
// for all of them (PowerMTA's domain macros, KumoMTA's sites). Its domain
// directives rank with [domain."name"].
type MXRollup struct {
	MXSuffix []string `toml:"mx-suffix"`
	Domain
}

// Redis shares limits, backoff states, IP health and the suppression list
// across nodes. Without it everything is local to this node.
type Redis struct {
	URL           string   `toml:"url"`            // "redis://127.0.0.1:6379/0"
	Nodes         []string `toml:"nodes"`          // Redis Cluster nodes "host:port", instead of url
	ExpectedNodes int      `toml:"expected-nodes"` // [1] while Redis is down, each node takes 1/N of each limit
}

// Enabled reports whether Redis is configured.
func (r Redis) Enabled() bool { return r.URL != "" || len(r.Nodes) > 0 }

// RollupFor returns the name of the rollup whose suffixes match one of the
// MX hosts, or "". Names compare case-insensitively, on label boundaries.
func (c *Config) RollupFor(mxHosts []string) string {
	names := make([]string, 0, len(c.MXRollups))
	for n := range c.MXRollups {
		names = append(names, n)
	}
	slices.Sort(names) // deterministic when two rollups match
	for _, n := range names {
		for _, suf := range c.MXRollups[n].MXSuffix {
			suf = strings.Trim(strings.ToLower(suf), ".")
			for _, h := range mxHosts {
				h = strings.TrimSuffix(strings.ToLower(h), ".")
				if h == suf || strings.HasSuffix(h, "."+suf) {
					return n
				}
			}
		}
	}
	return ""
}

func (c *Config) validateShaping(p *problems) {
	check := func(k string, d *Domain) {
		if d == nil {
			return
		}
		if d.MaxRcptPerMessage != nil && *d.MaxRcptPerMessage < 1 {
			p.add(k+".max-rcpt-per-message", "must be at least 1")
		}
		if d.BackoffMaxSMTPOut != nil && *d.BackoffMaxSMTPOut < 1 {
			p.add(k+".backoff-max-smtp-out", "must be at least 1")
		}
		for i, r := range d.BackoffRetryAfter {
			if r <= 0 {
				p.add(fmt.Sprintf("%s.backoff-retry-after[%d]", k, i), "must be greater than 0")
			}
		}
		if d.BackoffToNormalAfter != nil && *d.BackoffToNormalAfter != "delivery" {
			if v, err := ParseDuration(*d.BackoffToNormalAfter); err != nil || v <= 0 {
				p.add(k+".backoff-to-normal-after", "%q is neither a duration nor \"delivery\"", *d.BackoffToNormalAfter)
			}
		}
	}
	for name, r := range c.MXRollups {
		k := "mx-rollup." + quoteKey(name)
		if len(r.MXSuffix) == 0 {
			p.add(k+".mx-suffix", "required: the MX host suffixes of this site")
		}
		if strings.ContainsAny(name, "/ ") {
			p.add(k, "%q must not contain '/' or spaces", name)
		}
		check(k, &r.Domain)
		if r.MaxSMTPOut != nil && *r.MaxSMTPOut < 1 {
			p.add(k+".max-smtp-out", "must be at least 1")
		}
	}
	for name, d := range c.Domains {
		check("domain."+quoteKey(name), d)
	}
	for i, v := range c.VirtualMTAs {
		for name, d := range v.Domains {
			check(fmt.Sprintf("virtual-mta[%d].domain.%s", i, quoteKey(name)), d)
		}
	}
	if c.Redis.URL != "" {
		if u, err := url.Parse(c.Redis.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			p.add("redis.url", "%q is not a redis:// or rediss:// URL", c.Redis.URL)
		}
	}
	if c.Redis.URL != "" && len(c.Redis.Nodes) > 0 {
		p.add("redis", "set url or nodes, not both")
	}
	for i, n := range c.Redis.Nodes {
		if err := checkHostPort(n, false, 1); err != nil {
			p.add(fmt.Sprintf("redis.nodes[%d]", i), "%v", err)
		}
	}
	if c.Redis.ExpectedNodes < 0 {
		p.add("redis.expected-nodes", "must not be negative")
	}
}
