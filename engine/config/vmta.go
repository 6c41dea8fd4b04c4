package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// VirtualMTA is a source address and the name it greets with (PowerMTA's
// <virtual-mta>), with optional warm-up caps and per-domain overrides.
type VirtualMTA struct {
	Name           string             `toml:"name"`
	SMTPSourceHost string             `toml:"smtp-source-host"` // "IP hostname"
	WarmupStart    Date               `toml:"warmup-start"`     // day 1 of warm-up (UTC)
	WarmupDaily    []int              `toml:"warmup-daily"`     // cap for day 1, 2, …; none after the list
	WarmupPerSite  bool               `toml:"warmup-per-site"`  // apply the caps per destination site
	Domains        map[string]*Domain `toml:"domain"`           // overrides for mail through this VMTA
}

// Source returns the parsed smtp-source-host: address and EHLO name.
// Load has validated it.
func (v VirtualMTA) Source() (netip.Addr, string) {
	f := strings.Fields(v.SMTPSourceHost)
	if len(f) != 2 {
		return netip.Addr{}, ""
	}
	ip, _ := netip.ParseAddr(f[0])
	return ip, f[1]
}

// VirtualMTAPool is a weighted set of VMTAs (PowerMTA's <virtual-mta-pool>).
type VirtualMTAPool struct {
	Name        string   `toml:"name"`
	VirtualMTAs []string `toml:"virtual-mtas"` // "name:weight", weight 1 by default
}

// PoolMember is one parsed entry of a pool.
type PoolMember struct {
	VMTA   string
	Weight int
}

// Members parses virtual-mtas; Load has validated them.
func (p VirtualMTAPool) Members() []PoolMember {
	var ms []PoolMember
	for _, s := range p.VirtualMTAs {
		m, _ := parseMember(s)
		ms = append(ms, m)
	}
	return ms
}

func parseMember(s string) (PoolMember, error) {
	name, w, hasW := strings.Cut(strings.TrimSpace(s), ":")
	m := PoolMember{VMTA: name, Weight: 1}
	if name == "" {
		return m, fmt.Errorf("%q: empty VMTA name", s)
	}
	if hasW {
		n, err := strconv.Atoi(w)
		if err != nil || n <= 0 {
			return m, fmt.Errorf("%q: weight must be a whole number above 0", s)
		}
		m.Weight = n
	}
	return m, nil
}

// PatternRule is one line of an smtp-pattern-list: a regexp on the remote
// reply ("code status text") and what to do when it matches.
type PatternRule struct {
	Reply         Regexp   `toml:"reply"`
	Mode          string   `toml:"mode"`           // "backoff": the queue uses its backoff-* values
	Action        string   `toml:"action"`         // "disable-source-ip", "bounce", "retry-soon"
	ReenableAfter Duration `toml:"reenable-after"` // disable-source-ip [1h]
	RetryAfter    Duration `toml:"retry-after"`    // retry-soon [5m]
}

// Date is a calendar date, "2006-01-02" (a TOML local date works too).
type Date struct{ time.Time }

// UnmarshalText parses "YYYY-MM-DD".
func (d *Date) UnmarshalText(b []byte) error {
	t, err := time.Parse(time.DateOnly, string(b))
	if err != nil {
		return fmt.Errorf("%q is not a date (YYYY-MM-DD)", string(b))
	}
	d.Time = t
	return nil
}

// MarshalText renders "YYYY-MM-DD", or "" for the zero date.
func (d Date) MarshalText() ([]byte, error) {
	if d.IsZero() {
		return []byte{}, nil
	}
	return []byte(d.Format(time.DateOnly)), nil
}

// canBind reports whether ip is an address of this host: binding it is the
// only honest test (RFC 5321 §5 mail goes out from it).
func canBind(ip netip.Addr) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return err
	}
	return ln.Close()
}

func (c *Config) validateVirtualMTAs(p *problems, md *toml.MetaData) {
	names := map[string]string{} // name → what it names, for clashes
	for i, v := range c.VirtualMTAs {
		k := fmt.Sprintf("virtual-mta[%d]", i)
		switch {
		case v.Name == "":
			p.add(k+".name", "required")
		case strings.ContainsAny(v.Name, " /:\t"):
			p.add(k+".name", "%q must not contain spaces, '/' or ':'", v.Name)
		case names[v.Name] != "":
			p.add(k+".name", "%q is already the name of %s", v.Name, names[v.Name])
		default:
			names[v.Name] = "virtual-mta " + strconv.Quote(v.Name)
		}
		f := strings.Fields(v.SMTPSourceHost)
		if len(f) != 2 {
			p.add(k+".smtp-source-host", `%q must be "IP hostname"`, v.SMTPSourceHost)
		} else if ip, err := netip.ParseAddr(f[0]); err != nil {
			p.add(k+".smtp-source-host", "%q is not an IP address", f[0])
		} else if err := canBind(ip); err != nil {
			p.add(k+".smtp-source-host", "virtual-mta %q: source IP %s cannot be bound on this host: %v", v.Name, ip, err)
		}
		for j, n := range v.WarmupDaily {
			if n < 0 {
				p.add(fmt.Sprintf("%s.warmup-daily[%d]", k, j), "must not be negative")
			}
		}
		if len(v.WarmupDaily) > 0 && v.WarmupStart.IsZero() {
			p.add(k+".warmup-start", "required with warmup-daily")
		}
		for name, d := range v.Domains {
			dk := k + ".domain." + quoteKey(name)
			if d == nil {
				continue
			}
			if d.MaxSMTPOut != nil && *d.MaxSMTPOut < 1 {
				p.add(dk+".max-smtp-out", "must be at least 1")
			}
			if d.MaxMsgPerConnection != nil && *d.MaxMsgPerConnection < 0 {
				p.add(dk+".max-msg-per-connection", "must not be negative (0 is unlimited)")
			}
			for j, r := range d.RetryAfter {
				if r <= 0 {
					p.add(fmt.Sprintf("%s.retry-after[%d]", dk, j), "must be greater than 0")
				}
			}
			if d.Route != nil && *d.Route != "" {
				if err := checkHostPort(*d.Route, false, 1); err != nil {
					p.add(dk+".route", "%v", err)
				}
			}
		}
	}
	vmtas := map[string]bool{}
	for _, v := range c.VirtualMTAs {
		vmtas[v.Name] = true
	}
	for i, pl := range c.Pools {
		k := fmt.Sprintf("virtual-mta-pool[%d]", i)
		switch {
		case pl.Name == "":
			p.add(k+".name", "required")
		case names[pl.Name] != "":
			p.add(k+".name", "%q is already the name of %s", pl.Name, names[pl.Name])
		default:
			names[pl.Name] = "virtual-mta-pool " + strconv.Quote(pl.Name)
		}
		if len(pl.VirtualMTAs) == 0 {
			p.add(k+".virtual-mtas", "pool %q has no virtual MTAs", pl.Name)
		}
		seen := map[string]bool{}
		for j, s := range pl.VirtualMTAs {
			mk := fmt.Sprintf("%s.virtual-mtas[%d]", k, j)
			m, err := parseMember(s)
			switch {
			case err != nil:
				p.add(mk, "pool %q: %v", pl.Name, err)
			case !vmtas[m.VMTA]:
				p.add(mk, "pool %q: unknown virtual-mta %q", pl.Name, m.VMTA)
			case seen[m.VMTA]:
				p.add(mk, "pool %q: virtual-mta %q listed twice", pl.Name, m.VMTA)
			}
			seen[m.VMTA] = true
		}
	}
	known := func(n string) bool { return n == "" || names[n] != "" }
	for i, s := range c.Sources {
		if !known(s.DefaultVirtualMTA) {
			p.add(fmt.Sprintf("source[%d].default-virtual-mta", i), "unknown virtual-mta or pool %q", s.DefaultVirtualMTA)
		}
	}
	for i, u := range c.SMTPUsers {
		if !known(u.DefaultVirtualMTA) {
			p.add(fmt.Sprintf("smtp-user[%d].default-virtual-mta", i), "unknown virtual-mta or pool %q", u.DefaultVirtualMTA)
		}
	}
	_ = md
}

func (c *Config) validatePatternLists(p *problems) {
	for name, rules := range c.PatternLists {
		for i, r := range rules {
			k := fmt.Sprintf("smtp-pattern-list.%s[%d]", quoteKey(name), i)
			if r.Reply.Regexp == nil {
				p.add(k+".reply", "required")
			}
			switch {
			case r.Mode != "" && r.Action != "":
				p.add(k, "set mode or action, not both")
			case r.Mode == "backoff":
			case r.Mode != "":
				p.add(k+".mode", "%q is not a mode; use \"backoff\"", r.Mode)
			case r.Action == "":
				p.add(k+".action", "required: disable-source-ip, bounce or retry-soon")
			default:
				oneOf(p, k+".action", r.Action, "disable-source-ip", "bounce", "retry-soon")
			}
		}
	}
	check := func(k string, d *Domain) {
		if d != nil && d.SMTPPatternList != nil && *d.SMTPPatternList != "" {
			if _, ok := c.PatternLists[*d.SMTPPatternList]; !ok {
				p.add(k+".smtp-pattern-list", "unknown smtp-pattern-list %q", *d.SMTPPatternList)
			}
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
}

// Rules returns the pattern list a domain's settings name (nil for none),
// with the defaults of reenable-after and retry-after filled in.
func (c *Config) Rules(list string) []PatternRule {
	if list == "" {
		return nil
	}
	rules := append([]PatternRule(nil), c.PatternLists[list]...)
	for i := range rules {
		if rules[i].ReenableAfter == 0 {
			rules[i].ReenableAfter = Duration(time.Hour)
		}
		if rules[i].RetryAfter == 0 {
			rules[i].RetryAfter = Duration(5 * time.Minute)
		}
	}
	return rules
}
