package queue

import (
	"context"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Sites: mail is queued per site, not per domain. A site is an
// [mx-rollup.NAME] whose MX suffix matches the domain's MX hosts, else the
// first domain seen with the same MX set (domains hosted together roll up
// by themselves), else the domain. Finding it needs an MX lookup, which
// must not hold up the listener's 250: items wait in a per-domain list
// while one goroutine resolves it.

// siteTTL is how long a domain's site is remembered.
const siteTTL = 10 * time.Minute

type siteEntry struct {
	site      string
	expires   time.Time
	resolving bool
	waiting   []*item
}

// siteFor returns it's site when known. Otherwise it parks it, starts a
// lookup if none is running, and returns false; the item is made ready
// once the site is known.
func (s *Scheduler) siteFor(it *item) (string, bool) {
	if s.opts.Rollup == nil {
		return it.domain, true
	}
	now := s.opts.Now()
	s.sitesMu.Lock()
	e := s.sites[it.domain]
	if e != nil && !e.resolving && now.Before(e.expires) {
		s.sitesMu.Unlock()
		return e.site, true
	}
	if e == nil {
		e = &siteEntry{}
		s.sites[it.domain] = e
	}
	e.waiting = append(e.waiting, it)
	start := !e.resolving
	e.resolving = true
	s.sitesMu.Unlock()
	if start {
		s.mu.Lock()
		closed := s.closed
		if !closed {
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if !closed {
			go func() {
				defer s.wg.Done()
				s.resolveSite(it.domain)
			}()
		}
	}
	return "", false
}

// resolveSite looks up domain's MX hosts and names its site.
func (s *Scheduler) resolveSite(domain string) {
	ctx, cancel := context.WithTimeout(s.hardCtx, 30*time.Second)
	defer cancel()
	site := domain
	mxs, err := s.opts.Resolver.LookupMX(ctx, domain)
	if err == nil && len(mxs) > 0 {
		hosts := make([]string, 0, len(mxs))
		for _, mx := range mxs {
			hosts = append(hosts, strings.ToLower(strings.TrimSuffix(mx.Host, ".")))
		}
		if r := s.opts.Rollup(hosts); r != "" {
			site = r
		} else if hosts[0] != "." && hosts[0] != "" {
			slices.Sort(hosts)
			key := strings.Join(hosts, " ")
			s.sitesMu.Lock()
			if first, ok := s.mxSites[key]; ok {
				site = first
			} else {
				s.mxSites[key] = domain
			}
			s.sitesMu.Unlock()
		}
	}
	// A failed lookup leaves the domain its own site; delivery meets the
	// same failure and defers or bounces as it should.
	if site != domain {
		s.log.Debug("domain rolled up", zap.String("domain", domain), zap.String("site", site))
	}
	s.sitesMu.Lock()
	e := s.sites[domain]
	waiting := e.waiting
	e.site, e.expires, e.resolving, e.waiting = site, s.opts.Now().Add(siteTTL), false, nil
	if err != nil {
		e.expires = s.opts.Now().Add(10 * time.Second) // try the rollup again soon
	}
	s.sitesMu.Unlock()
	for _, it := range waiting {
		s.makeReady(it)
	}
}

// forgetSite drops a domain's cached site, so that it is looked up again.
func (s *Scheduler) forgetSite(domain string) {
	s.sitesMu.Lock()
	defer s.sitesMu.Unlock()
	if e := s.sites[domain]; e != nil && !e.resolving {
		delete(s.sites, domain)
	}
}
