package queue

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/delivery"
	"github.com/sluice-mta/sluice/engine/mtasts"
	"github.com/sluice-mta/sluice/engine/reply"
)

// Outbound TLS policy. A connection is opened for its queue's routing
// domain, whose needs decide the dial: require-starttls and an enforced
// MTA-STS policy forbid plaintext (no fallback), and the policy limits the
// MX hosts tried and requires a verified certificate (RFC 8461 §4). Since
// several domains can share a site's connection, each transaction is
// checked again against its own domain's needs, and against REQUIRETLS
// (RFC 8689 §4.2.1) for messages that carry it.

// STSPolicies gives a domain's MTA-STS policy (engine/mtasts.Cache); nil
// policy means none.
type STSPolicies interface {
	Get(ctx context.Context, domain string) (*mtasts.Policy, error)
}

// tlsNeeds is what one destination domain asks of a connection's TLS.
type tlsNeeds struct {
	domain  string
	require bool           // require-starttls
	policy  *mtasts.Policy // nil: no MTA-STS policy in use
	enforce bool           // the policy is enforced (mode enforce, mta-sts = "on")
	testing bool           // the policy's failures are only logged
}

// tlsNeedsFor returns domain's needs from its own settings and, when the
// queue's site is an [mx-rollup], the rollup's: the stricter wins, except
// that a domain's own mta-sts = "testing-only" demotes the rollup's "on".
// (A site that is just the first domain seen with an MX set lends its
// other settings to the domains rolled up with it, but never its TLS
// demands.) The MTA-STS policy is looked up when the
// domain's mta-sts switch is on or testing-only, or when forSTS is set
// (a REQUIRETLS message needs it to authenticate the MX host).
func (s *Scheduler) tlsNeedsFor(ctx context.Context, q *queue, domain string, forSTS bool) tlsNeeds {
	set := q.settings
	own, siteCounts := set, true
	if domain != q.site && s.opts.Domains != nil {
		own, siteCounts = s.opts.Domains(domain, q.vmta.Name), s.isRollupSite(q.site)
	}
	n := tlsNeeds{domain: domain, require: own.RequireStartTLS || siteCounts && set.RequireStartTLS}
	mode := own.MTASTS
	if mode == config.MTASTSOff && siteCounts {
		mode = set.MTASTS
	}
	if s.opts.STS == nil || set.Route != "" || (mode == config.MTASTSOff && !forSTS) {
		return n // a configured route is the operator's choice of next hop
	}
	p, err := s.opts.STS.Get(ctx, domain)
	if err != nil {
		s.log.Debug("mta-sts: no policy in force", zap.String("domain", domain), zap.Error(err))
	}
	if p == nil || p.Mode == mtasts.None {
		return n
	}
	n.policy = p
	switch {
	case mode == config.MTASTSOn && p.Mode == mtasts.Enforce:
		n.enforce = true
	case mode != config.MTASTSOff:
		n.testing = true
	}
	return n
}

// dialConfig returns the delivery settings for a connection meeting n.
func (s *Scheduler) dialConfig(q *queue, n tlsNeeds) delivery.Config {
	return delivery.Config{
		LocalIP:        q.vmta.SourceIP,
		Helo:           q.vmta.Hostname,
		UseStartTLS:    q.settings.UseStartTLS,
		RequireTLS:     n.require || n.enforce,
		RootCAs:        s.opts.TLSRoots,
		ConnectTimeout: s.opts.Delivery.ConnectTimeout.D(),
		CommandTimeout: s.opts.Delivery.CommandTimeout.D(),
		DataTimeout:    s.opts.Delivery.DataTimeout.D(),
	}
}

// stsTargets keeps the targets whose MX host the policy allows (RFC 8461
// §4.1). Under an enforced policy none left is a temporary failure, as
// RFC 8461 §5 asks: the policy may be fixed before the mail expires.
func (s *Scheduler) stsTargets(q *queue, n tlsNeeds, ts []target) ([]target, error) {
	if n.policy == nil {
		return ts, nil
	}
	var ok []target
	for _, t := range ts {
		if n.policy.Match(t.host) {
			ok = append(ok, t)
		} else {
			s.log.Info("mta-sts: MX host not in policy", zap.String("queue", q.name), zap.String("domain", n.domain),
				zap.String("mx", t.host), zap.Bool("enforced", n.enforce))
		}
	}
	if !n.enforce {
		return ts, nil
	}
	if len(ok) == 0 {
		return nil, reply.New(451, reply.Status{4, 7, 5}, "no MX host matches the MTA-STS policy")
	}
	return ok, nil
}

// stsCheck checks a fresh connection against an enforced policy's
// certificate rule (RFC 8461 §4.2); in testing mode it only logs.
func (s *Scheduler) stsCheck(q *queue, n tlsNeeds, c *delivery.Conn) error {
	if n.policy == nil {
		return nil
	}
	err := c.Verified()
	if err == nil {
		return nil
	}
	s.log.Info("mta-sts: MX certificate not valid", zap.String("queue", q.name), zap.String("domain", n.domain),
		zap.String("mx", c.RemoteHost()), zap.Bool("enforced", n.enforce), zap.Error(err))
	if !n.enforce {
		return nil
	}
	return reply.Wrap(451, reply.Status{4, 7, 5}, "MX certificate not valid for the MTA-STS policy", err)
}

// tlsRefusal returns the reply for a transaction that must not go over c,
// or nil: the item's domain may need more than the connection's routing
// domain did, and a REQUIRETLS message needs an authenticated MX host
// (RFC 8689 §4.2.1 step 1; the TLS steps are delivery.Send's).
func (s *Scheduler) tlsRefusal(ctx context.Context, c *delivery.Conn, it *item, connDomain string) *reply.Error {
	requireTLS := it.msg.env.RequireTLS
	if it.domain == connDomain && !requireTLS {
		return nil // checked when the connection was made
	}
	n := s.tlsNeedsFor(ctx, it.q, it.domain, requireTLS)
	_, _, hasTLS := c.TLS()
	switch {
	case (n.require || n.enforce) && !hasTLS:
		return reply.New(451, reply.Status{4, 7, 4}, "TLS is required but not in use with this host")
	case n.enforce && !n.policy.Match(c.RemoteHost()):
		return reply.New(451, reply.Status{4, 7, 5}, "MX host not allowed by the MTA-STS policy")
	case n.enforce && c.Verified() != nil:
		return reply.Wrap(451, reply.Status{4, 7, 5}, "MX certificate not valid for the MTA-STS policy", c.Verified())
	}
	if !requireTLS || it.q.settings.Route != "" {
		return nil // a configured route is an authenticated next hop
	}
	if n.policy == nil || !n.policy.Match(c.RemoteHost()) {
		// RFC 8689 §4.2.1 step 1: without DNSSEC (not implemented), only an
		// MTA-STS policy listing the host authenticates it. RFC 8689 §6: 5.7.30.
		return reply.Wrap(550, reply.Status{5, 7, 30}, "REQUIRETLS: MX host not authenticated by an MTA-STS policy",
			errors.New("no MTA-STS policy lists "+c.RemoteHost()))
	}
	return nil
}

// domainTLSFailure reports whether a failed dial is due to TLS demands of
// the routing domain alone (its own require-starttls or MTA-STS policy),
// which must not defer the mail of the site's other domains.
func (s *Scheduler) domainTLSFailure(q *queue, n tlsNeeds, r *reply.Error) bool {
	// Our own TLS deferrals (delivery.Dial, stsTargets, stsCheck); a
	// remote 421 4.7.0 greeting is the site's problem, not the domain's.
	if r.Code != 451 || r.Status != (reply.Status{4, 7, 4}) && r.Status != (reply.Status{4, 7, 5}) {
		return false
	}
	return n.enforce || n.require && !(q.settings.RequireStartTLS && s.isRollupSite(q.site))
}

// isRollupSite reports whether site names an [mx-rollup] rather than a
// domain (a domain that is a site is its own site in s.sites).
func (s *Scheduler) isRollupSite(site string) bool {
	s.sitesMu.Lock()
	defer s.sitesMu.Unlock()
	e, ok := s.sites[site]
	return !ok || e.site != site
}
