package config

import (
	"net/netip"
	"slices"

	"time"
)

// builtinDomain returns the settings of a domain when neither its own
// [domain."name"] nor [domain."*"] sets them.
func builtinDomain() DomainSettings {
	return DomainSettings{
		MaxSMTPOut:           20,
		MaxMsgPerConnection:  100,
		RetryAfter:           []Duration{Duration(10 * time.Minute)},
		BounceAfter:          Duration(4*24*time.Hour + 12*time.Hour),
		Route:                "",
		UseStartTLS:          true,
		MTASTS:               MTASTSOff,
		MaxRcptPerMessage:    100, // RFC 5321 §4.5.3.1.8: servers must take 100
		BackoffMaxSMTPOut:    20,
		BackoffRetryAfter:    []Duration{Duration(time.Hour)},
		BackoffToNormalAfter: Duration(time.Hour),
	}
}

// DomainFor returns the effective settings for mail to domain. The match is
// exact and case-insensitive (a final dot is ignored); a field the domain's
// table leaves unset comes from [domain."*"], and one "*" leaves unset from
// the built-in defaults. The RetryAfter slice is the caller's to keep.
func (c *Config) DomainFor(domain string) DomainSettings {
	return c.DomainForVMTA(domain, "")
}

// DomainForVMTA is DomainFor for mail leaving through the named virtual
// MTA. The cascade, most specific first: [virtual-mta.domain."name"],
// [domain."name"] or the [mx-rollup."name"] site, [virtual-mta.domain."*"],
// [domain."*"], built-ins. domain may name a rollup site.
func (c *Config) DomainForVMTA(domain, vmta string) DomainSettings {
	eff := &Domain{}
	var vd map[string]*Domain
	for i := range c.VirtualMTAs {
		if c.VirtualMTAs[i].Name == vmta {
			vd = c.VirtualMTAs[i].Domains
		}
	}
	key := domainKey(domain)
	if d := vd[key]; d != nil && domain != "*" {
		fillDomain(eff, d)
	}
	if d := c.Domains[key]; d != nil && domain != "*" {
		fillDomain(eff, d)
	}
	if r := c.MXRollups[domain]; r != nil {
		fillDomain(eff, &r.Domain)
	}
	if d := vd["*"]; d != nil {
		fillDomain(eff, d)
	}
	if d := c.Domains["*"]; d != nil {
		fillDomain(eff, d)
	}
	s := builtinDomain()
	if eff.MaxSMTPOut != nil {
		s.MaxSMTPOut = *eff.MaxSMTPOut
	}
	if eff.MaxMsgPerConnection != nil {
		s.MaxMsgPerConnection = *eff.MaxMsgPerConnection
	}
	if eff.RetryAfter != nil {
		s.RetryAfter = slices.Clone(eff.RetryAfter)
	}
	if eff.BounceAfter != nil {
		s.BounceAfter = *eff.BounceAfter
	}
	if eff.Route != nil {
		s.Route = *eff.Route
	}
	if eff.UseStartTLS != nil {
		s.UseStartTLS = *eff.UseStartTLS
	}
	if eff.RequireStartTLS != nil {
		s.RequireStartTLS = *eff.RequireStartTLS
	}
	if eff.MTASTS != nil {
		s.MTASTS = *eff.MTASTS
	}
	if eff.SMTPPatternList != nil {
		s.SMTPPatternList = *eff.SMTPPatternList
	}
	if eff.MaxMsgRate != nil {
		s.MaxMsgRate = *eff.MaxMsgRate
	}
	if eff.MaxConnectRate != nil {
		s.MaxConnectRate = *eff.MaxConnectRate
	}
	if eff.MaxRcptPerMessage != nil {
		s.MaxRcptPerMessage = *eff.MaxRcptPerMessage
	}
	s.BackoffMaxMsgRate = s.MaxMsgRate
	if eff.BackoffMaxMsgRate != nil {
		s.BackoffMaxMsgRate = *eff.BackoffMaxMsgRate
	}
	s.BackoffMaxSMTPOut = s.MaxSMTPOut
	if eff.BackoffMaxSMTPOut != nil {
		s.BackoffMaxSMTPOut = *eff.BackoffMaxSMTPOut
	}
	if eff.BackoffRetryAfter != nil {
		s.BackoffRetryAfter = slices.Clone(eff.BackoffRetryAfter)
	}
	if eff.BackoffToNormalAfter != nil {
		s.BackoffToNormalAfter = 0 // "delivery"
		if v, err := ParseDuration(*eff.BackoffToNormalAfter); err == nil {
			s.BackoffToNormalAfter = v
		}
	}
	if eff.PerNode != nil {
		s.PerNode = *eff.PerNode
	}
	return s
}

// SourceFor returns the [[source]] whose CIDR is the most specific one
// containing ip; an IPv4-mapped IPv6 address is matched as IPv4. With no
// match it returns the implicit source: CIDR 0.0.0.0/0, every option off
// except add-received-header, which Load also sets on every source that
// leaves it out.
func (c *Config) SourceFor(ip netip.Addr) Source {
	ip = ip.Unmap().WithZone("")
	best := -1
	for i, s := range c.Sources {
		if s.CIDR.Contains(ip) && (best < 0 || s.CIDR.Bits() > c.Sources[best].CIDR.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return Source{CIDR: CIDR{netip.PrefixFrom(netip.IPv4Unspecified(), 0)}, AddReceivedHeader: ptr(true)}
	}
	return c.Sources[best]
}
