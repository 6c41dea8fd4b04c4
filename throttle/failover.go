package throttle

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// FailoverOptions configures NewFailover.
type FailoverOptions struct {
	// ExpectedNodes is how many nodes share the limits. While Redis is
	// unreachable each node keeps 1/ExpectedNodes of every limit; default 1.
	ExpectedNodes int
	// Log receives one Warn when Redis is lost and one Info when it is back.
	Log *zap.Logger
	// ProbeInterval is how often Redis is pinged; default 1s. Shared limits
	// return within about an interval and a second of Redis answering again
	// (go-redis retries a refused dial once a second).
	ProbeInterval time.Duration
	// ProbeTimeout bounds one ping; default ProbeInterval, at least 1s.
	ProbeTimeout time.Duration
	// Clock is the time source of the local fallback; default time.Now.
	Clock func() time.Time
}

// Failover is a Backend on Redis that keeps working when Redis cannot be
// reached (DOMAIN.md §8). On the first failed call it switches to a Local
// backend holding each node's share of every limit: a connection limit
// becomes max(1, limit/ExpectedNodes) and a rate N per Per becomes N per
// Per×ExpectedNodes, which is N/ExpectedNodes without rounding. A probe
// goroutine, stopped by Close, pings Redis and switches back once it answers.
//
// What carries across a switch:
//   - States and counter values seen while Redis was up are mirrored
//     locally, so a queue in backoff stays in backoff during an outage.
//   - States set and counter increments made during the outage are written
//     to Redis before the switch back (the node's local state wins).
//   - A lease follows the limits on its next Renew: it moves to a local
//     slot when Redis is lost and back to a Redis slot when Redis returns
//     (its old Redis lease is reused if it has not expired). If there is
//     no room where it moves, Renew reports ErrLeaseLost, which brings the
//     node's connections down to its share.
//   - Subscribers get a resync Change at each switch.
//
// Failover owns primary and closes it.
type Failover struct {
	primary  *Redis
	local    *Local
	nodes    int
	log      *zap.Logger
	interval time.Duration
	timeout  time.Duration

	degraded atomic.Bool

	mu      sync.Mutex // guards the fields below and every change of degraded
	closed  bool
	since   time.Time                   // start of the current outage
	dirty   map[string]struct{}         // states set during the outage
	pending map[string]pendingIncrement // counter increments made during the outage
	subs    map[*mailbox]struct{}       // to announce a switch

	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

type pendingIncrement struct {
	delta int64
	ttl   time.Duration
}

// maxDirty bounds the states and counters remembered during an outage.
const maxDirty = 1 << 16

var _ Backend = (*Failover)(nil)

// NewFailover wraps primary and starts the probe goroutine.
func NewFailover(primary *Redis, o FailoverOptions) *Failover {
	if o.ExpectedNodes < 1 {
		o.ExpectedNodes = 1
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = time.Second
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = max(o.ProbeInterval, time.Second)
	}
	var lo []LocalOption
	if o.Clock != nil {
		lo = append(lo, WithClock(o.Clock))
	}
	f := &Failover{
		primary:  primary,
		local:    NewLocal(lo...),
		nodes:    o.ExpectedNodes,
		log:      o.Log,
		interval: o.ProbeInterval,
		timeout:  o.ProbeTimeout,
		dirty:    make(map[string]struct{}),
		pending:  make(map[string]pendingIncrement),
		subs:     make(map[*mailbox]struct{}),
	}
	f.base, f.cancel = context.WithCancel(context.Background())
	f.wg.Add(1)
	go f.probe() // owned by f: stopped by Close
	return f
}

// Degraded reports whether the node is running on local shares because
// Redis cannot be reached.
func (f *Failover) Degraded() bool { return f.degraded.Load() }

// connShare is a node's part of a connection limit during an outage.
func (f *Failover) connShare(limit int) int {
	if limit <= 0 {
		return 0
	}
	return max(1, limit/f.nodes)
}

// rateShare is a node's part of a rate during an outage: the period is
// stretched rather than N divided, so 5/s over 2 nodes is 5 per 2 s.
func (f *Failover) rateShare(r Rate) Rate {
	if r.Unlimited() || f.nodes == 1 {
		return r
	}
	b := max(1, r.Burst/f.nodes)
	if r.Per > math.MaxInt64/time.Duration(f.nodes) {
		return Rate{N: max(1, r.N/f.nodes), Per: r.Per, Burst: b}
	}
	return Rate{N: r.N, Per: r.Per * time.Duration(f.nodes), Burst: b}
}

// isOutage reports whether err means Redis cannot serve us now, as opposed
// to a bad request or a lost lease.
func isOutage(err error) bool {
	if err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, ErrClosed) || errors.Is(err, ErrLeaseLost) {
		return false
	}
	var re redis.Error
	if !errors.As(err, &re) {
		return true // network, timeout, pool or closed client
	}
	for _, p := range []string{"CLUSTERDOWN", "LOADING", "MASTERDOWN", "TRYAGAIN", "READONLY",
		"NOREPLICAS", "BUSY", "OOM", "max number of clients"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false // a reply to a bad request: Redis is up
}

// failed reports whether err from Redis should send the call to the local
// fallback, switching to it if so. The caller's own cancellation is not an
// outage.
func (f *Failover) failed(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || !isOutage(err) {
		return false
	}
	f.degrade(err)
	return true
}

func (f *Failover) degrade(err error) {
	f.mu.Lock()
	if f.closed || f.degraded.Load() {
		f.mu.Unlock()
		return
	}
	f.log.Warn("redis unreachable, using local limits", zap.Error(err), zap.Int("expected_nodes", f.nodes))
	f.degraded.Store(true)
	f.since = time.Now()
	f.announce()
	f.mu.Unlock()
}

// announce tells every subscriber to re-read. f.mu is held.
func (f *Failover) announce() {
	for m := range f.subs {
		m.put(Change{})
	}
}

// whileDegraded runs fn under f.mu if the node is still degraded, and
// reports whether it did; so nothing recorded for the switch back is missed.
func (f *Failover) whileDegraded(fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.degraded.Load() {
		return false
	}
	fn()
	return true
}

// probe pings Redis every interval: a failure switches to local limits, a
// success while degraded writes back the outage's states and counters and
// switches back.
func (f *Failover) probe() {
	defer f.wg.Done()
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-f.base.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(f.base, f.timeout)
		err := f.primary.Ping(ctx)
		switch {
		case err != nil && f.base.Err() == nil && isOutage(err):
			f.degrade(err)
		case err == nil && f.degraded.Load():
			f.restore(ctx)
		}
		cancel()
	}
}

// restore writes what changed during the outage to Redis and switches back
// once nothing is left to write; on failure it stays degraded and the next
// probe tries again.
func (f *Failover) restore(ctx context.Context) {
	for range 3 {
		f.mu.Lock()
		if len(f.dirty) == 0 && len(f.pending) == 0 {
			// Logged before the switch, so that whoever sees Degraded()
			// turn false also finds the line.
			f.log.Info("redis reachable, shared limits restored", zap.Duration("outage", time.Since(f.since)))
			f.degraded.Store(false)
			f.announce()
			f.mu.Unlock()
			return
		}
		dirty, pending := f.dirty, f.pending
		f.dirty, f.pending = make(map[string]struct{}), make(map[string]pendingIncrement)
		f.mu.Unlock()
		err := f.writeBack(ctx, dirty, pending)
		if err != nil {
			f.mu.Lock() // keep what was not written, for the next probe
			for k := range dirty {
				f.dirty[k] = struct{}{}
			}
			for k, p := range pending {
				q := f.pending[k]
				f.pending[k] = pendingIncrement{delta: q.delta + p.delta, ttl: p.ttl}
			}
			f.mu.Unlock()
			return
		}
	}
}

// writeBack pushes local states and counter increments to Redis, deleting
// each from the maps once written.
func (f *Failover) writeBack(ctx context.Context, dirty map[string]struct{}, pending map[string]pendingIncrement) error {
	for k := range dirty {
		st, err := f.local.GetState(ctx, k)
		if err == nil {
			err = f.primary.SetState(ctx, k, st)
		}
		if err != nil {
			return err
		}
		delete(dirty, k)
	}
	for k, p := range pending {
		v, err := f.primary.Counter(ctx, k, p.delta, p.ttl)
		if err != nil {
			return err
		}
		delete(pending, k)
		f.local.mirrorCounter(k, v, p.ttl)
	}
	return nil
}

// AllowN implements Backend.
func (f *Failover) AllowN(ctx context.Context, key string, rate Rate, n int) (bool, time.Duration, error) {
	if !f.degraded.Load() {
		ok, wait, err := f.primary.AllowN(ctx, key, rate, n)
		if !f.failed(ctx, err) {
			return ok, wait, err
		}
	}
	return f.local.AllowN(ctx, key, f.rateShare(rate), n)
}

// SetState implements Backend.
func (f *Failover) SetState(ctx context.Context, key string, st State) error {
	var err error
	for range 3 { // a switch may happen between the attempts
		if !f.degraded.Load() {
			if err = f.primary.SetState(ctx, key, st); err == nil {
				f.local.setState(key, st, false)
				return nil
			}
			if !f.failed(ctx, err) {
				return err
			}
		}
		if f.whileDegraded(func() {
			if err = f.local.SetState(ctx, key, st); err == nil && len(f.dirty) < maxDirty {
				f.dirty[key] = struct{}{}
			}
		}) {
			return err
		}
	}
	return err
}

// GetState implements Backend.
func (f *Failover) GetState(ctx context.Context, key string) (State, error) {
	if !f.degraded.Load() {
		st, err := f.primary.GetState(ctx, key)
		if err == nil {
			f.local.setState(key, st, false)
			return st, nil
		}
		if !f.failed(ctx, err) {
			return st, err
		}
	}
	return f.local.GetState(ctx, key)
}

// Counter implements Backend.
func (f *Failover) Counter(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	var (
		v   int64
		err error
	)
	for range 3 {
		if !f.degraded.Load() {
			if v, err = f.primary.Counter(ctx, key, delta, ttl); err == nil {
				f.local.mirrorCounter(key, v, ttl)
				return v, nil
			}
			if !f.failed(ctx, err) {
				return v, err
			}
		}
		if f.whileDegraded(func() {
			v, err = f.local.Counter(ctx, key, delta, ttl)
			if p, ok := f.pending[key]; err == nil && (ok || len(f.pending) < maxDirty) {
				f.pending[key] = pendingIncrement{delta: p.delta + delta, ttl: ttl}
			}
		}) {
			return v, err
		}
	}
	return v, err
}

// Subscribe implements Backend: changes from Redis (also mirrored locally)
// and, during an outage, this node's own changes.
func (f *Failover) Subscribe(ctx context.Context) <-chan Change {
	out := make(chan Change)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		close(out)
		return out
	}
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(f.base, cancel)
	m := newMailbox()
	f.subs[m] = struct{}{}
	f.wg.Add(3)
	f.mu.Unlock()

	wait := f.primary.wait
	if f.degraded.Load() {
		wait = 0
	}
	fromRedis := f.primary.subscribe(sctx, wait)
	fromLocal := f.local.Subscribe(sctx)
	go func() { // owned by f: ends when the Redis subscription does
		defer f.wg.Done()
		for c := range fromRedis {
			if !c.Resync() {
				f.local.setState(c.Key, c.State, false)
			}
			m.put(c)
		}
	}()
	go func() { // owned by f: ends when the local subscription does
		defer f.wg.Done()
		for c := range fromLocal {
			m.put(c)
		}
	}()
	go func() { // owned by f: delivers until ctx or Close
		defer f.wg.Done()
		defer stop()
		defer cancel()
		m.pump(sctx, out)
		f.mu.Lock()
		delete(f.subs, m)
		f.mu.Unlock()
	}()
	return out
}

// Close stops the probe and the subscriptions and closes primary and the
// local fallback.
func (f *Failover) Close() error {
	f.once.Do(func() {
		f.mu.Lock()
		f.closed = true
		f.mu.Unlock()
		f.cancel()
		f.wg.Wait()
		f.primary.Close()
		f.local.Close()
	})
	return nil
}
