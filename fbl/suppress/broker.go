package suppress

import (
	"context"
	"sync"

	"go.uber.org/zap"
)

// MaxPending is how many entries a subscriber may fall behind before the
// excess is dropped, so that a stuck reader cannot grow memory without bound.
const MaxPending = 1 << 16

// broker fans newly added entries out to the channels Subscribe returned.
// Each subscription has one goroutine, owned by the broker, that ends with
// the subscriber's context or close.
type broker struct {
	log  *zap.Logger
	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	mu      sync.Mutex
	q       []Entry
	dropped int
	wake    chan struct{} // capacity 1: "q is not empty"
	out     chan Entry
}

func newBroker(log *zap.Logger) *broker {
	return &broker{log: log, done: make(chan struct{}), subs: make(map[*subscriber]struct{})}
}

func (b *broker) subscribe(ctx context.Context) <-chan Entry {
	s := &subscriber{wake: make(chan struct{}, 1), out: make(chan Entry, 64)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(s.out)
		return s.out
	}
	b.subs[s] = struct{}{}
	b.wg.Add(1)
	go func() { // owned by b: ends with ctx or b.close
		defer b.wg.Done()
		defer close(s.out)
		s.pump(ctx, b.done, b.log)
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
	}()
	return s.out
}

// publish queues e for every subscriber; it never blocks.
func (b *broker) publish(e Entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		s.mu.Lock()
		if len(s.q) < MaxPending {
			s.q = append(s.q, e)
		} else {
			s.dropped++
		}
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *subscriber) pump(ctx context.Context, done <-chan struct{}, log *zap.Logger) {
	for {
		s.mu.Lock()
		q, dropped := s.q, s.dropped
		s.q, s.dropped = nil, 0
		s.mu.Unlock()
		if dropped > 0 {
			log.Error("suppression subscriber too slow, entries dropped", zap.Int("dropped", dropped))
		}
		for _, e := range q {
			select {
			case s.out <- e:
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return
		case <-done:
			return
		}
	}
}

// close ends every subscription and waits for their goroutines.
func (b *broker) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
	b.mu.Unlock()
	b.wg.Wait()
}
