package throttle

import (
	"context"
	"sync"
	"time"
)

// Local is the in-process Backend: GCRA over a map of theoretical arrival
// times, counting semaphores whose leases expire, a state map with expiry,
// counters, and pub/sub over channels. It shares nothing with other nodes.
// Expired entries are swept as the maps grow, so memory follows the live keys.
type Local struct {
	now func() time.Time

	mu       sync.Mutex
	tats     map[string]int64 // key → TAT, Unix ns
	sems     map[string]map[uint64]int64
	states   map[string]State
	counters map[string]localCounter
	subs     map[*mailbox]struct{}
	nextID   uint64
	ops      int // mutations since the last sweep
	sweepAt  int
	closed   bool

	base   context.Context // cancelled by Close; parent of every subscription
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type localCounter struct {
	v   int64
	exp int64 // Unix ns; 0: never
}

// LocalOption configures NewLocal.
type LocalOption func(*Local)

// WithClock makes the backend read time from now instead of time.Now, so
// tests can advance it.
func WithClock(now func() time.Time) LocalOption {
	return func(l *Local) { l.now = now }
}

var _ Backend = (*Local)(nil)

// NewLocal returns an empty in-process backend. Close ends its subscriptions.
func NewLocal(opts ...LocalOption) *Local {
	l := &Local{
		now:      time.Now,
		tats:     make(map[string]int64),
		sems:     make(map[string]map[uint64]int64),
		states:   make(map[string]State),
		counters: make(map[string]localCounter),
		subs:     make(map[*mailbox]struct{}),
		sweepAt:  1024,
	}
	for _, o := range opts {
		o(l)
	}
	l.base, l.cancel = context.WithCancel(context.Background())
	return l
}

// AcquireConn implements Backend.
func (l *Local) AcquireConn(ctx context.Context, key string, limit int, ttl time.Duration) (Lease, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if err := checkTTL(ttl); err != nil {
		return nil, false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, false, ErrClosed
	}
	now := l.now().UnixNano()
	l.maybeSweep(now)
	sem := l.sems[key]
	for id, exp := range sem { // drop expired leases, as ZREMRANGEBYSCORE does
		if exp <= now {
			delete(sem, id)
		}
	}
	if len(sem) >= limit {
		return nil, false, nil
	}
	if sem == nil {
		sem = make(map[uint64]int64)
		l.sems[key] = sem
	}
	l.nextID++
	sem[l.nextID] = now + int64(ttl)
	return &localLease{l: l, key: key, id: l.nextID, ttl: ttl}, true, nil
}

// localLease is a slot in a Local semaphore.
type localLease struct {
	l   *Local
	key string
	id  uint64
	ttl time.Duration
}

func (x *localLease) Renew(ctx context.Context) error {
	l := x.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	now := l.now().UnixNano()
	sem := l.sems[x.key]
	exp, ok := sem[x.id]
	if !ok || exp <= now {
		delete(sem, x.id)
		return ErrLeaseLost
	}
	sem[x.id] = now + int64(x.ttl)
	return nil
}

func (x *localLease) Release(ctx context.Context) error {
	l := x.l
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.sems[x.key], x.id) // an empty set stays for reuse until swept
	return nil
}

// AllowN implements Backend.
func (l *Local) AllowN(ctx context.Context, key string, rate Rate, n int) (bool, time.Duration, error) {
	if err := checkKey(key); err != nil {
		return false, 0, err
	}
	if rate.Unlimited() {
		return true, 0, nil
	}
	interval, tolerance, err := rate.gcra(n)
	if err != nil {
		return false, 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false, 0, ErrClosed
	}
	now := l.now().UnixNano()
	l.maybeSweep(now)
	tat, ok, wait := gcraStep(l.tats[key], now, interval, tolerance, n)
	if !ok {
		return false, time.Duration(wait), nil
	}
	l.tats[key] = tat
	return true, 0, nil
}

// SetState implements Backend.
func (l *Local) SetState(ctx context.Context, key string, st State) error {
	return l.setState(key, st, true)
}

// setState stores st and, if publish, tells the subscribers. Failover
// mirrors what it learns from Redis with publish false.
func (l *Local) setState(key string, st State, publish bool) error {
	if err := checkKey(key); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	now := l.now()
	st, err := normalize(st, now)
	if err != nil {
		return err
	}
	l.maybeSweep(now.UnixNano())
	if st.Mode == ModeNormal {
		delete(l.states, key)
	} else {
		l.states[key] = st
	}
	if publish {
		for m := range l.subs { // under l.mu: every reader sees one key's changes in order
			m.put(Change{Key: key, State: st})
		}
	}
	return nil
}

// GetState implements Backend.
func (l *Local) GetState(ctx context.Context, key string) (State, error) {
	if err := checkKey(key); err != nil {
		return State{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return State{}, ErrClosed
	}
	st, ok := l.states[key]
	if !ok || (!st.Until.IsZero() && !st.Until.After(l.now())) {
		return State{Mode: ModeNormal}, nil
	}
	return st, nil
}

// Subscribe implements Backend.
func (l *Local) Subscribe(ctx context.Context) <-chan Change {
	out := make(chan Change)
	m := newMailbox()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		close(out)
		return out
	}
	l.subs[m] = struct{}{}
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.base, cancel)
	l.wg.Add(1)
	go func() { // owned by l: ends with ctx or Close
		defer l.wg.Done()
		defer cancel()
		defer stop()
		m.pump(sctx, out)
		l.mu.Lock()
		delete(l.subs, m)
		l.mu.Unlock()
	}()
	return out
}

// Counter implements Backend.
func (l *Local) Counter(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := checkCounter(key, ttl); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	now := l.now().UnixNano()
	l.maybeSweep(now)
	c, ok := l.counters[key]
	if !ok || (c.exp != 0 && c.exp <= now) {
		c = localCounter{}
	}
	if c.exp == 0 && ttl > 0 { // as the Redis script: PEXPIRE when PTTL is -1
		c.exp = now + int64(ttl)
	}
	c.v += delta
	l.counters[key] = c
	return c.v, nil
}

// mirrorCounter records a value read from Redis, so that a Failover
// carries on from it during an outage. A live window keeps its expiry.
func (l *Local) mirrorCounter(key string, v int64, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	now := l.now().UnixNano()
	c, ok := l.counters[key]
	if !ok || (c.exp != 0 && c.exp <= now) {
		c = localCounter{}
		if ttl > 0 {
			c.exp = now + int64(ttl)
		}
	}
	c.v = v
	l.counters[key] = c
}

// Close implements Backend.
func (l *Local) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
	return nil
}

// maybeSweep drops expired entries once the mutations since the last sweep
// reach the size of the maps, so its cost is amortised over those calls.
// l.mu is held.
func (l *Local) maybeSweep(now int64) {
	l.ops++
	if l.ops < l.sweepAt {
		return
	}
	for k, tat := range l.tats {
		if tat <= now {
			delete(l.tats, k)
		}
	}
	for k, sem := range l.sems {
		for id, exp := range sem {
			if exp <= now {
				delete(sem, id)
			}
		}
		if len(sem) == 0 {
			delete(l.sems, k)
		}
	}
	for k, st := range l.states {
		if !st.Until.IsZero() && st.Until.UnixNano() <= now {
			delete(l.states, k)
		}
	}
	for k, c := range l.counters {
		if c.exp != 0 && c.exp <= now {
			delete(l.counters, k)
		}
	}
	l.ops = 0
	l.sweepAt = max(1024, len(l.tats)+len(l.sems)+len(l.states)+len(l.counters))
}
