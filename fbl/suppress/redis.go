package suppress

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// startWait bounds how long NewRedis waits for the subscription and the
// first load of the cache before it returns with the cache still loading.
// If Redis does not answer a PING within pingWait it does not wait at all.
const (
	startWait = 10 * time.Second
	pingWait  = 2 * time.Second
)

// Redis is a Store shared by every node that uses the same Redis and prefix.
// Each node keeps a copy of the list in memory, filled by a full load and
// kept fresh by the pub/sub events of every Add and Remove; IsSuppressed
// reads Redis only while that copy is not known to be complete (at start,
// after a reconnection, or with WithoutCache). When Redis is unreachable
// the last complete copy keeps answering.
type Redis struct {
	c       redis.UniversalClient
	prefix  string
	channel string
	scopes  string // key of the set of scope names
	log     *zap.Logger
	o       options
	b       *broker
	node    string
	seq     atomic.Uint64

	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	reload chan struct{} // capacity 1: ask run to reload the cache
	ready  chan struct{} // closed once the cache is first live (or subscribed, without cache)

	mu   sync.RWMutex
	idx  index
	live bool // idx is complete and kept fresh by events

	waitMu  sync.Mutex
	waiters map[string]chan struct{} // operation id → closed when its event is applied

	knownScopes sync.Map // scopes this node has already put in the scopes set
}

var _ Store = (*Redis)(nil)

// NewRedis returns a Store on client (a *redis.Client or *redis.ClusterClient)
// with keys under prefix. It subscribes to the event channel and loads the
// list, waiting up to 10 s for both (not at all if Redis does not answer a
// PING within 2 s); if that wait ends first it returns anyway, and lookups
// go to Redis until the load succeeds. It starts
// goroutines that run until Close; Close does not close the client.
func NewRedis(client redis.UniversalClient, prefix string, log *zap.Logger, opts ...Option) (*Redis, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	o := buildOptions(append([]Option{WithLogger(log)}, opts...))
	var id [8]byte
	rand.Read(id[:])
	r := &Redis{
		c: client, prefix: prefix, channel: prefix + ":events", scopes: prefix + ":scopes",
		log: log, o: o, b: newBroker(log), node: hex.EncodeToString(id[:]),
		reload: make(chan struct{}, 1), ready: make(chan struct{}),
		idx: make(index), waiters: make(map[string]chan struct{}),
	}
	r.base, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go func() { // owned by r: ends at Close
		defer r.wg.Done()
		r.run()
	}()
	if o.purgeEvery > 0 {
		r.wg.Add(1)
		go func() { // owned by r: ends at Close
			defer r.wg.Done()
			r.purgeLoop()
		}()
	}
	pctx, cancel := context.WithTimeout(r.base, pingWait)
	err := client.Ping(pctx).Err()
	cancel()
	if err != nil { // no point waiting for a load that cannot happen
		log.Warn("redis unreachable, suppression list will load when it is back", zap.Error(err))
		return r, nil
	}
	t := time.NewTimer(startWait)
	defer t.Stop()
	select {
	case <-r.ready:
	case <-t.C:
		log.Warn("suppression list not loaded from redis yet, reading redis directly")
	}
	return r, nil
}

// Add implements Store. When it returns nil the entry is in Redis and, with
// the cache on, in this node's copy too.
func (r *Redis) Add(ctx context.Context, e Entry) error {
	if r.closed.Load() {
		return ErrClosed
	}
	e, err := prepare(e, r.o.now())
	if err != nil {
		return err
	}
	if err := r.noteScope(ctx, e.Scope); err != nil {
		return err
	}
	rec := encodeRecord(e)
	exp := "0"
	if !e.Expires.IsZero() {
		exp = strconv.FormatInt(max(1, e.Expires.UnixMilli()), 10)
	}
	id, done := r.expect()
	ev := encodeEvent(event{Op: opAdd, ID: id, Scope: e.Scope, Addr: e.Addr, Rec: rec})
	err = scriptAdd.Run(ctx, r.c, []string{r.hkey(e.Scope), r.xkey(e.Scope)}, e.Addr, rec, exp, r.channel, ev).Err()
	if err != nil {
		r.forget(id)
		return fmt.Errorf("suppress: add %s: %w", e.Addr, err)
	}
	r.await(ctx, id, done)
	return nil
}

// noteScope records a scope name in the scopes set, once per node.
func (r *Redis) noteScope(ctx context.Context, scope string) error {
	if scope == "" {
		return nil
	}
	if _, ok := r.knownScopes.Load(scope); ok {
		return nil
	}
	if err := r.c.SAdd(ctx, r.scopes, scope).Err(); err != nil {
		return fmt.Errorf("suppress: add scope %q: %w", scope, err)
	}
	r.knownScopes.Store(scope, true)
	return nil
}

// Remove implements Store.
func (r *Redis) Remove(ctx context.Context, scope, addr string) error {
	if r.closed.Load() {
		return ErrClosed
	}
	a, err := lookupKey(scope, addr)
	if err != nil {
		return err
	}
	id, done := r.expect()
	ev := encodeEvent(event{Op: opDel, ID: id, Scope: scope, Addr: a})
	n, err := scriptRemove.Run(ctx, r.c, []string{r.hkey(scope), r.xkey(scope)}, a, r.channel, ev).Int()
	if err != nil || n == 0 {
		r.forget(id)
		if err != nil {
			return fmt.Errorf("suppress: remove %s: %w", a, err)
		}
		return ErrNotFound
	}
	r.await(ctx, id, done)
	return nil
}

// expect registers an operation id whose event this node waits for.
func (r *Redis) expect() (string, chan struct{}) {
	id := r.node + "-" + strconv.FormatUint(r.seq.Add(1), 36)
	if r.o.noCache {
		return id, nil
	}
	done := make(chan struct{})
	r.waitMu.Lock()
	r.waiters[id] = done
	r.waitMu.Unlock()
	return id, done
}

func (r *Redis) forget(id string) {
	r.waitMu.Lock()
	delete(r.waiters, id)
	r.waitMu.Unlock()
}

// await waits until this node's copy has applied the operation's own event,
// so that a lookup right after Add sees the entry. If the event is late the
// copy may have missed events: it is reloaded, and lookups go to Redis
// until then.
func (r *Redis) await(ctx context.Context, id string, done chan struct{}) {
	if done == nil {
		return
	}
	defer r.forget(id)
	t := time.NewTimer(r.o.echoWait)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-ctx.Done(): // the caller gave up; the event still comes
		return
	case <-r.base.Done():
		return
	case <-t.C:
	}
	r.mu.Lock()
	wasLive := r.live
	r.live = false
	r.mu.Unlock()
	if wasLive {
		r.log.Warn("suppression event not seen in time, reloading from redis", zap.Duration("waited", r.o.echoWait))
	}
	select {
	case r.reload <- struct{}{}:
	default:
	}
}

// notify wakes the Add or Remove waiting for the event with this id.
func (r *Redis) notify(id string) {
	r.waitMu.Lock()
	if done, ok := r.waiters[id]; ok {
		close(done)
		delete(r.waiters, id)
	}
	r.waitMu.Unlock()
}

// IsSuppressed implements Store. It reads the in-memory copy when that is
// live, and Redis otherwise.
func (r *Redis) IsSuppressed(ctx context.Context, scope, addr string) (Entry, bool, error) {
	a, err := lookupKey(scope, addr)
	if err != nil {
		return Entry{}, false, err
	}
	now := r.o.now()
	r.mu.RLock()
	if r.live {
		e, ok := r.idx.lookup(scope, a, now)
		r.mu.RUnlock()
		return e, ok, nil
	}
	r.mu.RUnlock()
	return r.lookupRedis(ctx, scope, a, now)
}

// lookupRedis is IsSuppressed against Redis, in one pipelined round trip.
func (r *Redis) lookupRedis(ctx context.Context, scope, a string, now time.Time) (Entry, bool, error) {
	dom := domainOf(a)
	pipe := r.c.Pipeline()
	global := pipe.HMGet(ctx, r.hkey(""), a, dom)
	var scoped *redis.SliceCmd
	if scope != "" {
		scoped = pipe.HMGet(ctx, r.hkey(scope), a, dom)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return Entry{}, false, fmt.Errorf("suppress: lookup %s: %w", a, err)
	}
	type cand struct {
		cmd   *redis.SliceCmd
		scope string
		i     int
		addr  string
	}
	cands := []cand{{scoped, scope, 0, a}, {global, "", 0, a}, {scoped, scope, 1, dom}, {global, "", 1, dom}}
	for _, c := range cands {
		if c.cmd == nil {
			continue
		}
		s, ok := c.cmd.Val()[c.i].(string)
		if !ok {
			continue
		}
		e, err := decodeRecord(c.scope, c.addr, []byte(s))
		if err != nil {
			r.log.Warn("suppression entry unreadable", zap.String("rcpt", c.addr), zap.Error(err))
			continue
		}
		if !e.Expired(now) {
			return e, true, nil
		}
	}
	return Entry{}, false, nil
}

// List implements Store. It always reads Redis, not the cache.
func (r *Redis) List(ctx context.Context, scope string, fn func(Entry) error) error {
	scopes := []string{scope}
	if scope == AllScopes {
		names, err := r.c.SMembers(ctx, r.scopes).Result()
		if err != nil {
			return fmt.Errorf("suppress: list scopes: %w", err)
		}
		scopes = append([]string{""}, names...)
	} else if err := checkScope(scope); err != nil {
		return err
	}
	now := r.o.now()
	for _, s := range scopes {
		if checkScope(s) != nil {
			continue
		}
		err := r.scan(ctx, s, func(e Entry) error {
			if e.Expired(now) {
				return nil
			}
			return fn(e)
		})
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fnError carries an error returned by List's fn through scan unchanged.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// scan walks one scope's hash with HSCAN, skipping unreadable records.
func (r *Redis) scan(ctx context.Context, scope string, fn func(Entry) error) error {
	var cursor uint64
	for {
		kv, next, err := r.c.HScan(ctx, r.hkey(scope), cursor, "*", 1000).Result()
		if err != nil {
			return fmt.Errorf("suppress: scan scope %q: %w", scope, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			e, err := decodeRecord(scope, kv[i], []byte(kv[i+1]))
			if err != nil {
				r.log.Warn("suppression entry unreadable", zap.String("rcpt", clip(kv[i])), zap.Error(err))
				continue
			}
			if err := fn(e); err != nil {
				return fnError{err}
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// Subscribe implements Store. Entries come from the event channel, so an
// entry added by any node arrives, this node's own included. After a lost
// connection the reload also delivers the entries added meanwhile.
func (r *Redis) Subscribe(ctx context.Context) <-chan Entry { return r.b.subscribe(ctx) }

// Purge deletes expired entries from Redis and from this node's copy, and
// returns how many it deleted from Redis.
func (r *Redis) Purge(ctx context.Context) (int, error) {
	names, err := r.c.SMembers(ctx, r.scopes).Result()
	if err != nil {
		return 0, fmt.Errorf("suppress: purge: %w", err)
	}
	now := r.o.now()
	total := 0
	for _, s := range append([]string{""}, names...) {
		if checkScope(s) != nil {
			continue
		}
		for {
			n, err := scriptPurge.Run(ctx, r.c, []string{r.hkey(s), r.xkey(s)}, now.UnixMilli(), 1000).Int()
			if err != nil {
				return total, fmt.Errorf("suppress: purge scope %q: %w", s, err)
			}
			total += n
			if n < 1000 {
				break
			}
		}
	}
	r.mu.Lock()
	for _, e := range r.idx.expired(now) {
		r.idx.del(e.Scope, e.Addr)
	}
	r.mu.Unlock()
	return total, nil
}

func (r *Redis) purgeLoop() {
	t := time.NewTicker(r.o.purgeEvery)
	defer t.Stop()
	for {
		select {
		case <-r.base.Done():
			return
		case <-t.C:
			if _, err := r.Purge(r.base); err != nil && r.base.Err() == nil {
				r.log.Warn("suppression purge failed", zap.Error(err))
			}
		}
	}
}

// Close implements Store.
func (r *Redis) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.cancel()
	r.wg.Wait()
	r.b.close()
	return nil
}

// Live reports whether lookups are answered from the in-memory copy.
func (r *Redis) Live() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.live
}
