package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/bcrypt"
)

// bounceCategories are PowerMTA's bounce categories, in its order.
func bounceCategories() []string {
	return []string{
		"bad-mailbox", "bad-domain", "inactive-mailbox", "quota-issues", "spam-related",
		"policy-related", "routing-errors", "protocol-errors", "content-related",
		"message-expired", "no-answer-from-host", "relaying-issues", "bad-connection",
		"bad-configuration", "invalid-sender", "virus-related", "other",
	}
}

// validate checks the decoded, defaulted config; every problem goes to p.
func (c *Config) validate(p *problems, md *toml.MetaData) {
	c.validateLog(p)
	c.validateListeners(p)
	c.validateSources(p)
	c.validateUsers(p)
	c.validateDNS(p)
	c.validateDelivery(p)
	c.validateAcct(p)
	c.validateBounceRules(p)
	c.validateDomains(p, md)
	c.validateVirtualMTAs(p, md)
	c.validatePatternLists(p)
	c.validateShaping(p)
	c.validateAdmin(p)
	c.validateTLS(p)
	c.validateLogs(p)
	c.validateFBL(p, md)
	c.validateDKIM(p)
	c.validateReliability(p, md)
	c.validateInject(p)
	if strings.ContainsFunc(c.Hostname, unicode.IsSpace) {
		p.add("hostname", "%q must not contain spaces", c.Hostname)
	}
}

func oneOf(p *problems, key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		p.add(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

func (c *Config) validateLog(p *problems) {
	oneOf(p, "log.format", c.Log.Format, "json", "console")
	oneOf(p, "log.level", c.Log.Level, "debug", "info", "warn", "error")
}

func (c *Config) validateListeners(p *problems) {
	if len(c.Listeners) == 0 {
		p.add("listener", "at least one [[listener]] is required")
	}
	first := map[string]int{}
	for i, l := range c.Listeners {
		k := fmt.Sprintf("listener[%d]", i)
		if err := checkHostPort(l.Address, true, 0); err != nil {
			p.add(k+".address", "%v", err)
		} else if j, dup := first[l.Address]; dup {
			p.add(k+".address", "%q is also listener[%d]'s", l.Address, j)
		} else {
			first[l.Address] = i
		}
		if l.MaxSessions < 0 {
			p.add(k+".max-sessions", "must not be negative")
		}
		if (l.TLSCert == "") != (l.TLSKey == "") {
			missing := "tls-key"
			if l.TLSCert == "" {
				missing = "tls-cert"
			}
			p.add(k+"."+missing, "tls-cert and tls-key must be set together")
		}
	}
}

// checkHostPort checks "host:port"; the host may be empty only if emptyHost,
// and the port must be at least minPort.
func checkHostPort(s string, emptyHost bool, minPort int) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if host == "" && !emptyHost {
		return fmt.Errorf("%q has no host", s)
	}
	if strings.ContainsFunc(host, unicode.IsSpace) {
		return fmt.Errorf("%q: host must not contain spaces", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < minPort || n > 65535 {
		return fmt.Errorf("%q: port must be a number from %d to 65535", s, minPort)
	}
	return nil
}

func (c *Config) validateSources(p *problems) {
	first := map[netip.Prefix]int{}
	for i, s := range c.Sources {
		k := fmt.Sprintf("source[%d].cidr", i)
		if !s.CIDR.IsValid() {
			p.add(k, "required")
			continue
		}
		if j, dup := first[s.CIDR.Prefix]; dup {
			p.add(k, "%s is also source[%d]'s", s.CIDR, j)
			continue
		}
		first[s.CIDR.Prefix] = i
	}
}

func (c *Config) validateUsers(p *problems) {
	for i, u := range c.SMTPUsers {
		k := fmt.Sprintf("smtp-user[%d]", i)
		if u.Name == "" {
			p.add(k+".name", "required")
		}
		for j := range i {
			if u.Name != "" && strings.EqualFold(u.Name, c.SMTPUsers[j].Name) {
				p.add(k+".name", "%q is also smtp-user[%d]'s", u.Name, j)
				break
			}
		}
		switch {
		case u.Password == "":
			p.add(k+".password", "required")
		case isBcrypt(u.Password):
			if _, err := bcrypt.Cost([]byte(u.Password)); err != nil {
				p.add(k+".password", "malformed bcrypt hash: %v", err)
			}
		}
	}
}

func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// validateDNS checks the servers and writes each as "ip:port", adding :53 to
// a bare address.
func (c *Config) validateDNS(p *problems) {
	for i, s := range c.DNS.Servers {
		k := fmt.Sprintf("dns.servers[%d]", i)
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			c.DNS.Servers[i] = netip.AddrPortFrom(a, 53).String()
			continue
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			p.add(k, `%q is not "ip:port" or "ip"`, s)
			continue
		}
		c.DNS.Servers[i] = ap.String()
	}
	if c.DNS.Timeout <= 0 {
		p.add("dns.timeout", "must be greater than 0")
	}
}

func (c *Config) validateDelivery(p *problems) {
	d := c.Delivery
	if d.Port < 1 || d.Port > 65535 {
		p.add("delivery.port", "%d is not a port from 1 to 65535", d.Port)
	}
	if d.SourceIP != "" {
		if _, err := netip.ParseAddr(d.SourceIP); err != nil {
			p.add("delivery.source-ip", "%q is not an IP address", d.SourceIP)
		}
	}
	for _, t := range []struct {
		key string
		d   Duration
	}{
		{"delivery.connect-timeout", d.ConnectTimeout},
		{"delivery.command-timeout", d.CommandTimeout},
		{"delivery.data-timeout", d.DataTimeout},
	} {
		if t.d <= 0 {
			p.add(t.key, "must be greater than 0")
		}
	}
}

func (c *Config) validateAcct(p *problems) {
	for i, r := range c.Acct.Records {
		k := fmt.Sprintf("acct.records[%d]", i)
		switch {
		case r != "d" && r != "b" && r != "t" && r != "r" && r != "f" && r != "rb":
			p.add(k, "%q is not a record type; use d, b, t, r, f or rb", r)
		case slices.Contains(c.Acct.Records[:i], r):
			p.add(k, "%q is listed twice", r)
		}
	}
	c.validateAcctHeaders(p)
}

func (c *Config) validateBounceRules(p *problems) {
	cats := bounceCategories()
	for i, r := range c.BounceRules {
		k := fmt.Sprintf("bounce-rule[%d]", i)
		if r.Pattern.Regexp == nil {
			p.add(k+".pattern", "required")
		}
		if !slices.Contains(cats, r.Category) {
			p.add(k+".category", "%q is not a bounce category; use one of %s", r.Category, strings.Join(cats, ", "))
		}
	}
}

func (c *Config) validateDomains(p *problems, md *toml.MetaData) {
	names := make([]string, 0, len(c.Domains))
	for name := range c.Domains {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { // "*" sorts first; the order of errors is stable
		if c := strings.Compare(domainKey(a), domainKey(b)); c != 0 {
			return c
		}
		// the same domain twice: report the later one in the file
		return p.ix.lineOf("domain."+quoteKey(a)) - p.ix.lineOf("domain."+quoteKey(b))
	})
	first := map[string]string{}
	for _, name := range names {
		k := "domain." + quoteKey(name)
		switch norm := domainKey(name); {
		case name == "":
			p.add(k, "empty domain name")
		case name != "*" && strings.Contains(name, "*"):
			p.add(k, `wildcards are not supported; use "*" for the defaults or an exact domain`)
		case strings.ContainsFunc(name, unicode.IsSpace) || strings.Contains(name, "@"):
			p.add(k, "%q is not a domain name", name)
		case first[norm] != "":
			p.add(k, "same domain as %s", "domain."+quoteKey(first[norm]))
		default:
			first[norm] = name
		}
		d := c.Domains[name]
		if d == nil {
			continue
		}
		if d.MaxSMTPOut != nil && *d.MaxSMTPOut < 1 {
			p.add(k+".max-smtp-out", "must be at least 1")
		}
		if d.MaxMsgPerConnection != nil && *d.MaxMsgPerConnection < 0 {
			p.add(k+".max-msg-per-connection", "must not be negative (0 is unlimited)")
		}
		if len(d.RetryAfter) == 0 && (d.RetryAfter != nil || md.IsDefined("domain", name, "retry-after")) {
			p.add(k+".retry-after", "must not be empty")
		}
		for i, r := range d.RetryAfter {
			if r <= 0 {
				p.add(fmt.Sprintf("%s.retry-after[%d]", k, i), "must be greater than 0")
			}
		}
		if d.BounceAfter != nil && *d.BounceAfter <= 0 {
			p.add(k+".bounce-after", "must be greater than 0")
		}
		if d.Route != nil && *d.Route != "" {
			if err := checkHostPort(*d.Route, false, 1); err != nil {
				p.add(k+".route", "%v", err)
			}
		}
	}
}
