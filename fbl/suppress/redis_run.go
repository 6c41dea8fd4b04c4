package suppress

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// maxBuffered bounds the events held while a load is in flight; beyond it
// the load is restarted.
const maxBuffered = 1 << 20

// pending is an event received while a load runs, with its entry.
type pending struct {
	ev event
	e  Entry
}

// loadResult is the outcome of one full load of the list.
type loadResult struct {
	gen int
	idx index
	err error
}

// run owns the subscription. It loads the cache when the subscription is
// first confirmed and again after every reconnection (events published
// meanwhile are lost), buffering events while a load runs and applying them
// on top of it, in order.
func (r *Redis) run() {
	ps := r.c.Subscribe(r.base, r.channel)
	in := ps.ChannelWithSubscriptions(redis.WithChannelSize(1024), redis.WithChannelHealthCheckInterval(time.Second))
	results := make(chan loadResult)
	var (
		gen      int         // number of the load whose result is awaited; 0 for none
		loads    int         // loads started
		loaded   bool        // a load has completed before
		buffered []pending   // events received during the current load
		retry    *time.Timer // pending retry of a failed load
		retryC   <-chan time.Time
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
		ps.Close()
		for range in { // let go-redis's reader see the close and exit
		}
	}()
	startLoad := func() {
		if r.o.noCache {
			return
		}
		r.mu.Lock()
		r.live = false
		r.mu.Unlock()
		loads++
		gen, buffered = loads, nil
		r.wg.Add(1)
		go func(g int) { // owned by r: ends when the load does or at Close
			defer r.wg.Done()
			idx, err := r.load(r.base)
			select {
			case results <- loadResult{g, idx, err}:
			case <-r.base.Done():
			}
		}(gen)
	}
	for {
		select {
		case <-r.base.Done():
			return
		case msg, ok := <-in:
			if !ok {
				return
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Kind != "subscribe" {
					continue
				}
				if r.o.noCache {
					r.markReady()
					continue
				}
				if loaded {
					r.log.Warn("suppression events resubscribed, reloading from redis")
				}
				startLoad()
			case *redis.Message:
				ev, e, err := decodeEvent(m.Payload)
				if err != nil {
					r.log.Warn("suppression event ignored", zap.Error(err))
					continue
				}
				if ev.Op == opAdd {
					r.b.publish(e)
				}
				switch {
				case r.o.noCache:
				case gen != 0:
					if len(buffered) >= maxBuffered {
						startLoad()
						continue
					}
					buffered = append(buffered, pending{ev, e})
				default:
					r.mu.Lock()
					apply(r.idx, ev, e)
					r.mu.Unlock()
					r.notify(ev.ID)
				}
			}
		case res := <-results:
			if res.gen != gen {
				continue // superseded by a later load
			}
			gen = 0
			if res.err != nil {
				if r.base.Err() == nil {
					r.log.Warn("suppression list load failed, retrying", zap.Error(res.err))
				}
				retry = time.NewTimer(time.Second)
				retryC = retry.C
				continue
			}
			r.install(res.idx, buffered, loaded)
			buffered, loaded = nil, true
			r.markReady()
		case <-retryC:
			retry, retryC = nil, nil
			if gen == 0 {
				startLoad()
			}
		case <-r.reload:
			if gen == 0 {
				startLoad()
			}
		}
	}
}

func (r *Redis) markReady() {
	select {
	case <-r.ready:
	default:
		close(r.ready)
	}
}

// apply puts one event into an index.
func apply(ix index, ev event, e Entry) {
	if ev.Op == opAdd {
		ix.put(e)
	} else {
		ix.del(ev.Scope, ev.Addr)
	}
}

// install makes a freshly loaded index live, with the events received
// during the load applied on top. After a reconnection (reloaded) the
// entries that are new or changed since the previous copy go to the
// subscribers, since their events may have been lost.
func (r *Redis) install(idx index, buffered []pending, reloaded bool) {
	if reloaded {
		r.mu.RLock()
		old := r.idx
		var fresh []Entry
		for scope, m := range idx {
			for addr, e := range m {
				if o, ok := old[scope][addr]; !ok || !sameEntry(o, e) {
					fresh = append(fresh, e)
				}
			}
		}
		r.mu.RUnlock()
		for _, e := range fresh {
			r.b.publish(e)
		}
	}
	for _, p := range buffered {
		apply(idx, p.ev, p.e)
	}
	r.mu.Lock()
	r.idx, r.live = idx, true
	r.mu.Unlock()
	for _, p := range buffered {
		r.notify(p.ev.ID)
	}
}

func sameEntry(a, b Entry) bool {
	return a.Reason == b.Reason && a.Added.Equal(b.Added) && a.Expires.Equal(b.Expires) && a.Note == b.Note
}

// load reads the whole list from Redis, leaving out expired entries.
func (r *Redis) load(ctx context.Context) (index, error) {
	names, err := r.c.SMembers(ctx, r.scopes).Result()
	if err != nil {
		return nil, err
	}
	idx := make(index)
	now := r.o.now()
	for _, s := range append([]string{""}, names...) {
		if checkScope(s) != nil {
			continue
		}
		err := r.scan(ctx, s, func(e Entry) error {
			if !e.Expired(now) {
				idx.put(e)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return idx, nil
}
