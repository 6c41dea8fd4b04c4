package suppress

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// kvPrefix starts every key Local writes: kvPrefix + scope + "\x00" + addr.
// Scopes and addresses are printable, so the separator is unambiguous.
const kvPrefix = "suppress/"

func kvKey(scope, addr string) string { return kvPrefix + scope + "\x00" + addr }

// Local is a Store for one node, persisted in a KV and indexed in memory.
type Local struct {
	kv  KV
	o   options
	b   *broker
	wmu sync.Mutex // serialises KV writes, so the KV and the index agree

	mu  sync.RWMutex
	idx index

	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

var _ Store = (*Local)(nil)

// NewLocal loads the list from kv and returns a Local. Expired entries found
// at load are deleted; unreadable ones are logged and skipped. A background
// purge runs until Close (see WithPurgeInterval).
func NewLocal(kv KV, opts ...Option) (*Local, error) {
	o := buildOptions(opts)
	l := &Local{kv: kv, o: o, b: newBroker(o.log), idx: make(index), stop: make(chan struct{})}
	now := o.now()
	var stale []string
	err := kv.Scan(kvPrefix, func(key string, v []byte) error {
		scope, addr, ok := strings.Cut(key[len(kvPrefix):], "\x00")
		if !ok {
			o.log.Warn("suppression entry skipped", zap.String("key", clip(key)), zap.String("error", "bad key"))
			return nil
		}
		e, err := decodeRecord(scope, addr, v)
		if err != nil {
			o.log.Warn("suppression entry skipped", zap.String("key", clip(key)), zap.Error(err))
			return nil
		}
		if e.Expired(now) {
			stale = append(stale, key)
			return nil
		}
		l.idx.put(e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("suppress: load: %w", err)
	}
	for _, k := range stale {
		if err := kv.Delete(k); err != nil {
			return nil, fmt.Errorf("suppress: delete expired entry: %w", err)
		}
	}
	if o.purgeEvery > 0 {
		l.wg.Add(1)
		go func() { // owned by l: ends at Close
			defer l.wg.Done()
			l.purgeLoop()
		}()
	}
	return l, nil
}

// Add implements Store.
func (l *Local) Add(ctx context.Context, e Entry) error {
	if l.closed.Load() {
		return ErrClosed
	}
	e, err := prepare(e, l.o.now())
	if err != nil {
		return err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.kv.Set(kvKey(e.Scope, e.Addr), encodeRecord(e)); err != nil {
		return fmt.Errorf("suppress: store %s: %w", e.Addr, err)
	}
	l.mu.Lock()
	l.idx.put(e)
	l.mu.Unlock()
	l.b.publish(e)
	return nil
}

// Remove implements Store.
func (l *Local) Remove(ctx context.Context, scope, addr string) error {
	if l.closed.Load() {
		return ErrClosed
	}
	a, err := lookupKey(scope, addr)
	if err != nil {
		return err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.RLock()
	_, ok := l.idx[scope][a]
	l.mu.RUnlock()
	if !ok {
		return ErrNotFound
	}
	if err := l.kv.Delete(kvKey(scope, a)); err != nil {
		return fmt.Errorf("suppress: remove %s: %w", a, err)
	}
	l.mu.Lock()
	l.idx.del(scope, a)
	l.mu.Unlock()
	return nil
}

// IsSuppressed implements Store. It does no I/O.
func (l *Local) IsSuppressed(ctx context.Context, scope, addr string) (Entry, bool, error) {
	a, err := lookupKey(scope, addr)
	if err != nil {
		return Entry{}, false, err
	}
	now := l.o.now()
	l.mu.RLock()
	e, ok := l.idx.lookup(scope, a, now)
	l.mu.RUnlock()
	return e, ok, nil
}

// List implements Store.
func (l *Local) List(ctx context.Context, scope string, fn func(Entry) error) error {
	if scope != AllScopes {
		if err := checkScope(scope); err != nil {
			return err
		}
	}
	now := l.o.now()
	l.mu.RLock()
	snap := l.idx.snapshot(scope, now)
	l.mu.RUnlock()
	for _, e := range snap {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Len returns the number of entries held, expired ones not yet purged
// included.
func (l *Local) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n := 0
	for _, m := range l.idx {
		n += len(m)
	}
	return n
}

// Subscribe implements Store.
func (l *Local) Subscribe(ctx context.Context) <-chan Entry { return l.b.subscribe(ctx) }

// Purge deletes expired entries from the KV and the index, and returns how
// many it deleted.
func (l *Local) Purge(ctx context.Context) (int, error) {
	now := l.o.now()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.RLock()
	old := l.idx.expired(now)
	l.mu.RUnlock()
	for i, e := range old {
		if err := l.kv.Delete(kvKey(e.Scope, e.Addr)); err != nil {
			return i, fmt.Errorf("suppress: purge: %w", err)
		}
		l.mu.Lock()
		l.idx.del(e.Scope, e.Addr)
		l.mu.Unlock()
	}
	return len(old), nil
}

func (l *Local) purgeLoop() {
	t := time.NewTicker(l.o.purgeEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if n, err := l.Purge(context.Background()); err != nil {
				l.o.log.Warn("suppression purge failed", zap.Error(err))
			} else if n > 0 {
				l.o.log.Debug("suppression entries expired", zap.Int("count", n))
			}
		}
	}
}

// Close implements Store.
func (l *Local) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	close(l.stop)
	l.wg.Wait()
	l.b.close()
	return nil
}
