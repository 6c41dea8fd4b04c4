package throttle

import (
	"context"
	"errors"
	"sync"
	"time"
)

// AcquireConn implements Backend. The lease is taken on Redis, or on the
// local share during an outage, and follows the limits on Renew.
func (f *Failover) AcquireConn(ctx context.Context, key string, limit int, ttl time.Duration) (Lease, bool, error) {
	l := &failoverLease{f: f, key: key, limit: limit, ttl: ttl}
	if !f.degraded.Load() {
		inner, ok, err := f.primary.AcquireConn(ctx, key, limit, ttl)
		if !f.failed(ctx, err) {
			if !ok || err != nil {
				return nil, false, err
			}
			l.inner, l.shared = inner, true
			return l, true, nil
		}
	}
	inner, ok, err := f.local.AcquireConn(ctx, key, f.connShare(limit), ttl)
	if !ok || err != nil {
		return nil, false, err
	}
	l.inner = inner
	return l, true, nil
}

// failoverLease is a slot on Redis (shared) or on the local share.
type failoverLease struct {
	f     *Failover
	key   string
	limit int
	ttl   time.Duration

	mu     sync.Mutex
	inner  Lease // nil once lost or released
	shared bool  // inner is a Redis lease
	parked Lease // the Redis lease left behind during an outage
}

// Renew implements Lease.
func (l *failoverLease) Renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner == nil {
		return ErrLeaseLost
	}
	if l.shared != l.f.degraded.Load() { // the lease lives where the limits do
		err := l.inner.Renew(ctx)
		if !l.shared || !l.f.failed(ctx, err) {
			if errors.Is(err, ErrLeaseLost) {
				l.inner = nil
			}
			return err
		}
	}
	if l.shared {
		return l.toLocal(ctx)
	}
	return l.toRedis(ctx)
}

// toLocal moves the lease to a local slot, parking the Redis lease.
func (l *failoverLease) toLocal(ctx context.Context) error {
	l.parked, l.inner, l.shared = l.inner, nil, false
	inner, ok, err := l.f.local.AcquireConn(ctx, l.key, l.f.connShare(l.limit), l.ttl)
	if err != nil {
		return err
	}
	if !ok {
		return ErrLeaseLost
	}
	l.inner = inner
	return nil
}

// toRedis moves the lease back to Redis: its parked lease if still alive,
// else a fresh slot if there is room. If Redis fails again it stays local.
func (l *failoverLease) toRedis(ctx context.Context) error {
	if p := l.parked; p != nil {
		err := p.Renew(ctx)
		switch {
		case err == nil:
			l.inner.Release(ctx)
			l.inner, l.shared, l.parked = p, true, nil
			return nil
		case l.f.failed(ctx, err):
			return l.inner.Renew(ctx)
		case !errors.Is(err, ErrLeaseLost):
			return err
		}
		l.parked = nil
	}
	inner, ok, err := l.f.primary.AcquireConn(ctx, l.key, l.limit, l.ttl)
	if err != nil {
		if l.f.failed(ctx, err) {
			return l.inner.Renew(ctx)
		}
		return err
	}
	l.inner.Release(ctx)
	if !ok {
		l.inner = nil
		return ErrLeaseLost
	}
	l.inner, l.shared = inner, true
	return nil
}

// Release implements Lease. A Redis lease that cannot be reached is left
// to expire.
func (l *failoverLease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	for _, x := range []Lease{l.inner, l.parked} {
		if x == nil {
			continue
		}
		if e := x.Release(ctx); e != nil && !l.f.failed(ctx, e) {
			err = e
		}
	}
	l.inner, l.parked = nil, nil
	return err
}
