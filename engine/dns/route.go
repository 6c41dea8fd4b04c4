package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"

	"github.com/sluice-mta/sluice/engine/reply"
	"go.uber.org/zap"
)

// Host is one mail server to try for a domain: its name (lower-case, no
// trailing dot), its MX preference, and its addresses, IPv4 first.
type Host struct {
	Name string
	Pref uint16
	IPs  []netip.Addr
}

// maxParallel bounds the MX hosts whose addresses are looked up at once.
const maxParallel = 8

// Route returns the hosts to try for mail to domain, in order (RFC 5321
// §5.1): MX preference ascending, equal preferences shuffled, hosts without
// an address left out. A domain without MX records is its own mail server
// (implicit MX). Errors are *reply.Error:
//
//	556 5.1.10  null MX: the domain accepts no mail (RFC 7505 §3), cause ErrNullMX
//	550 5.1.2   the domain does not exist (cause ErrNXDomain), or neither it
//	            nor any of its MX hosts has an address (cause ErrNoAddress)
//	550 5.1.3   domain is not a valid domain name (cause ErrBadName)
//	451 4.4.3   a lookup failed (SERVFAIL, timeout, network): retry later
func (r *Resolver) Route(ctx context.Context, domain string) ([]Host, error) {
	name, err := normalize(domain)
	if err != nil {
		return nil, err
	}
	mxs, err := r.LookupMX(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(mxs) == 0 {
		return r.implicitMX(ctx, name)
	}

	// RFC 7505 §3: a lone MX with exchange "." means the domain accepts no
	// mail. A domain must not mix it with other MX records; if one does,
	// the "." entries are skipped as unusable and the others are tried.
	hosts := make([]Host, 0, len(mxs))
	seen := make(map[string]int, len(mxs)) // host → index in hosts
	for _, mx := range mxs {
		if mx.Host == "." {
			continue
		}
		if i, ok := seen[mx.Host]; ok { // listed twice: keep the better preference
			hosts[i].Pref = min(hosts[i].Pref, mx.Pref)
			continue
		}
		seen[mx.Host] = len(hosts)
		hosts = append(hosts, Host{Name: mx.Host, Pref: mx.Pref})
	}
	if len(hosts) == 0 {
		return nil, reply.Wrap(556, reply.Status{5, 1, 10}, "recipient domain does not accept mail",
			fmt.Errorf("%s: %w", display(name), ErrNullMX))
	}

	// RFC 5321 §5.1: lowest preference first, and hosts of equal
	// preference MUST be randomized to spread the load. Shuffle, then sort
	// stably by preference.
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b Host) int { return cmp.Compare(a.Pref, b.Pref) })

	errs := r.resolveHosts(ctx, hosts)
	out := hosts[:0]
	permanent := true
	var causes []error
	for i, h := range hosts {
		if len(h.IPs) > 0 {
			out = append(out, h)
			continue
		}
		err := errs[i]
		if err == nil {
			err = fmt.Errorf("%s: %w", h.Name, ErrNoAddress) // NODATA for A and AAAA
		}
		if ce := r.log.Check(zap.DebugLevel, "mx host skipped"); ce != nil {
			ce.Write(zap.String("domain", display(name)), zap.String("mx", h.Name), zap.Error(err))
		}
		var re *reply.Error
		if errors.As(err, &re) && re.Temporary() {
			permanent = false
		}
		if len(causes) < 4 {
			causes = append(causes, err)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	// RFC 5321 §5.1: MX records present but none usable is an error. It is
	// permanent only when every host is known to have no address; any
	// failed lookup makes it worth retrying.
	cause := fmt.Errorf("%s: no MX host has an address: %w", display(name), errors.Join(causes...))
	if permanent {
		return nil, reply.Wrap(550, reply.Status{5, 1, 2}, "domain has no reachable mail server", cause)
	}
	return nil, errTemp(cause)
}

// implicitMX handles a domain with no MX records: RFC 5321 §5.1 treats it
// as if it had one MX of preference 0 pointing at itself.
func (r *Resolver) implicitMX(ctx context.Context, name string) ([]Host, error) {
	ips, err := r.LookupIP(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, reply.Wrap(550, reply.Status{5, 1, 2}, "domain has no mail server",
			fmt.Errorf("%s: no MX and %w", display(name), ErrNoAddress))
	}
	return []Host{{Name: display(name), Pref: 0, IPs: ips}}, nil
}

// resolveHosts fills in each host's IPs and returns each host's lookup
// error. Hosts the cache answers are filled in place; the others are looked
// up maxParallel at a time. It returns only after every lookup.
func (r *Resolver) resolveHosts(ctx context.Context, hosts []Host) []error {
	errs := make([]error, len(hosts))
	var pending []int
	for i := range hosts {
		var ok bool
		if name, err := normalize(hosts[i].Name); err != nil {
			errs[i], ok = err, true
		} else {
			hosts[i].IPs, ok, errs[i] = r.cachedIP(name)
		}
		if !ok {
			pending = append(pending, i)
		}
	}
	if len(pending) == 1 {
		i := pending[0]
		hosts[i].IPs, errs[i] = r.LookupIP(ctx, hosts[i].Name)
		return errs
	}
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for _, i := range pending {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			hosts[i].IPs, errs[i] = r.LookupIP(ctx, hosts[i].Name)
		})
	}
	wg.Wait()
	return errs
}
