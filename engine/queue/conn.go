package queue

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/delivery"
	"github.com/sluice-mta/sluice/engine/dns"
	"github.com/sluice-mta/sluice/engine/reply"
)

// target is one address to try for a queue.
type target struct {
	host string // MX host name (or route host)
	addr string // "ip:port"
}

// runConn is one outbound connection of q: resolve, connect (trying MX
// hosts in order), then send ready items until the queue runs dry, the
// per-connection limit is reached, the connection breaks or we stop.
func (s *Scheduler) runConn(q *queue) {
	failed := false
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("delivery goroutine panicked", zap.String("queue", q.name), zap.Any("panic", p), zap.Stack("stack"))
			failed = true
		}
		s.connDone(q, failed)
	}()
	ctx := s.hardCtx
	lease := s.acquireSlot(q)
	if lease == nil {
		failed = true // nothing to do, or stopping: no respawn
		return
	}
	defer lease.Release(context.WithoutCancel(ctx))
	leased := s.opts.Now()
	q.mu.Lock()
	routeDomain := q.domain
	q.mu.Unlock()
	targets, err := s.targets(ctx, q, routeDomain)
	if err != nil {
		r := reply.From(err)
		if r.Permanent() && q.site != routeDomain {
			// The domain the site routes through is gone (NXDOMAIN, null
			// MX): that is its own mail's fault, not the rest of the site's.
			s.failDomain(q, routeDomain, r)
			s.forgetSite(routeDomain)
			return // connDone starts another connection for what is left
		}
		s.failQueue(q, r, nil)
		failed = true
		return
	}
	need := s.tlsNeedsFor(ctx, q, routeDomain, false)
	if targets, err = s.stsTargets(q, need, targets); err != nil {
		s.failDomain(q, routeDomain, reply.From(err)) // RFC 8461 §5: defer
		return
	}
	conn, err := s.dial(ctx, q, targets, need)
	if err != nil {
		r := reply.From(err)
		if r.Permanent() { // a refusal at connection level is never a bounce by itself
			r = reply.Wrap(451, reply.Status{4, 4, 0}, r.Error(), r)
		}
		if s.domainTLSFailure(q, need, r) { // tls.go
			s.failDomain(q, routeDomain, r) // the site's other domains get a connection of their own
			return
		}
		q.mu.Lock()
		others := q.active > 1
		q.mu.Unlock()
		failed = true
		if others {
			// Other connections of this queue work (e.g. the remote caps
			// connections per client): this one just ends.
			return
		}
		s.failQueue(q, r, nil)
		return
	}
	defer conn.Quit()
	s.connected(q)
	info := connInfoOf(conn)
	info.domain = routeDomain
	limit := q.settings.MaxMsgPerConnection
	for sent := 0; limit == 0 || sent < limit; sent++ {
		if !s.opts.Pools.Available(q.vmta, q.site) {
			s.reroute(q) // disabled for this site: its mail moves within the pool
			return
		}
		it := s.next(q)
		if it == nil {
			return
		}
		if !s.opts.Pools.Available(q.vmta, q.site) {
			// Disabled while this connection waited: not from this IP.
			s.makeReady(it)
			s.reroute(q)
			return
		}
		if _, rate, _ := s.limits(q); !rate.Unlimited() && !s.waitRate(q, "rate", toRate(rate)) {
			s.makeReady(it) // stopping: back to the queue, still pending in the spool
			return
		}
		if now := s.opts.Now(); now.Sub(leased) > leaseTTL/3 {
			if err := lease.Renew(ctx); err != nil {
				s.makeReady(it)
				return // the slot is gone (e.g. Redis came back full): close this connection
			}
			leased = now
		}
		if !s.deliver(ctx, conn, it, info) {
			return
		}
	}
}

// connDone accounts for a finished connection goroutine and starts another
// when mail is still waiting (e.g. after max-msg-per-connection).
func (s *Scheduler) connDone(q *queue, failed bool) {
	q.mu.Lock()
	q.active--
	again := !failed && len(q.ready) > 0 && q.active < q.settings.MaxSMTPOut && s.runCtx.Err() == nil
	var parked []*item
	if failed && q.active == 0 && len(q.ready) > 0 && s.runCtx.Err() == nil {
		// Mail arrived while this failing connection was settling: with no
		// connection left it would sit in the ready list. Wait for the hold
		// to end, or try again now if there is none.
		if hold := q.holdUntil; !hold.IsZero() && s.opts.Now().Before(hold) {
			parked, q.ready = q.ready, nil
			for _, it := range parked {
				it.next = hold
			}
		} else {
			again = true
		}
	}
	if again {
		q.active++
	}
	q.mu.Unlock()
	for _, it := range parked {
		s.timers.push(it)
	}
	if again {
		if s.opts.Shared {
			// The slot just freed is the fleet's: give the other nodes'
			// waiting connections a fair chance at it before taking it back.
			q.mu.Lock()
			q.yield++
			q.mu.Unlock()
		}
		s.spawn(q)
	}
}

// next returns the next ready item of q, waiting up to IdleTimeout for one
// to arrive; nil means none came, or we are stopping.
func (s *Scheduler) next(q *queue) *item {
	q.mu.Lock()
	if s.runCtx.Err() != nil {
		q.mu.Unlock()
		return nil
	}
	if it := q.popLocked(); it != nil {
		q.mu.Unlock()
		return it
	}
	ch := make(chan *item, 1)
	q.idle = append(q.idle, ch)
	q.mu.Unlock()
	t := time.NewTimer(s.opts.IdleTimeout)
	defer t.Stop()
	select {
	case it := <-ch:
		return it
	case <-t.C:
	case <-s.runCtx.Done():
	}
	q.mu.Lock()
	removed := q.removeIdleLocked(ch)
	q.mu.Unlock()
	if !removed { // handed over while we were giving up: take it
		return <-ch
	}
	return nil
}

// targets lists the addresses to try for q's domain: the configured route,
// an address literal, or the MX hosts in preference order (RFC 5321 §5.1).
func (s *Scheduler) targets(ctx context.Context, q *queue, domain string) ([]target, error) {
	port := strconv.Itoa(s.opts.Delivery.Port)
	if r := q.settings.Route; r != "" {
		host, p, err := net.SplitHostPort(r)
		if err != nil {
			return nil, reply.Wrap(451, reply.Status{4, 3, 5}, "bad route", err)
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			return []target{{host: host, addr: net.JoinHostPort(ip.String(), p)}}, nil
		}
		ips, err := s.opts.Resolver.LookupIP(ctx, host)
		if err != nil {
			return nil, err
		}
		var ts []target
		for _, ip := range ips {
			ts = append(ts, target{host: host, addr: net.JoinHostPort(ip.String(), p)})
		}
		return ts, nil
	}
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		lit := strings.TrimPrefix(strings.TrimSuffix(domain[1:], "]"), "ipv6:")
		ip, err := netip.ParseAddr(lit)
		if err != nil {
			return nil, reply.New(550, reply.Status{5, 1, 2}, "bad address literal")
		}
		return []target{{host: domain, addr: net.JoinHostPort(ip.String(), port)}}, nil
	}
	hosts, err := s.opts.Resolver.Route(ctx, domain)
	if err != nil {
		return nil, err
	}
	var ts []target
	for _, h := range hosts {
		for _, ip := range h.IPs {
			ts = append(ts, target{host: h.Name, addr: net.JoinHostPort(ip.String(), port)})
		}
	}
	if len(ts) == 0 {
		return nil, reply.New(451, reply.Status{4, 4, 4}, "no usable address for destination")
	}
	return ts, nil
}

// dial tries each target in turn; if one fails to connect, the next is
// tried (RFC 5321 §5.1).
func (s *Scheduler) dial(ctx context.Context, q *queue, ts []target, need tlsNeeds) (*delivery.Conn, error) {
	cfg := s.dialConfig(q, need) // tls.go
	var lastErr error
	for _, t := range ts {
		c, err := delivery.Dial(ctx, t.addr, t.host, cfg)
		if err == nil {
			if err = s.stsCheck(q, need, c); err == nil {
				return c, nil
			}
			c.Quit() // RFC 8461 §4.2: not this host; try the next one
		}
		s.log.Debug("connect failed", zap.String("queue", q.name), zap.String("mx", t.host), zap.String("addr", t.addr), zap.Error(err))
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// connInfo describes a connection for the acct record.
type connInfo struct {
	mta, srcIP, dstIP, esmtp, tlsProto, tlsCipher string
	domain                                        string // the routing domain the connection was made for
}

func connInfoOf(c *delivery.Conn) *connInfo {
	ci := &connInfo{
		mta:   c.RemoteHost() + " (" + c.RemoteIP() + ")",
		srcIP: c.LocalIP(),
		dstIP: c.RemoteIP(),
		esmtp: strings.Join(c.Extensions(), ","),
	}
	if v, ciph, ok := c.TLS(); ok {
		ci.tlsProto, ci.tlsCipher = v, ciph
	}
	return ci
}

var _ Resolver = (*dns.Resolver)(nil)
