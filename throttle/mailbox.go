package throttle

import (
	"context"
	"sync"
)

// maxPending bounds the distinct keys a mailbox holds for a slow reader;
// past it the mailbox drops them all and keeps one resync marker instead.
const maxPending = 4096

// mailbox buffers changes for one subscriber. put never blocks, so a
// publisher may call it under its own lock (which keeps changes to one key
// in order); changes to a key already waiting replace it in place.
type mailbox struct {
	mu     sync.Mutex
	order  []string
	latest map[string]State
	wake   chan struct{} // cap 1: "something was put"
}

func newMailbox() *mailbox {
	return &mailbox{latest: make(map[string]State), wake: make(chan struct{}, 1)}
}

func (m *mailbox) put(c Change) {
	m.mu.Lock()
	if _, waiting := m.latest[c.Key]; !waiting {
		if len(m.order) >= maxPending {
			clear(m.latest)
			m.order = m.order[:0]
			c = Change{} // too far behind: tell the reader to re-read
		}
		m.order = append(m.order, c.Key)
	}
	m.latest[c.Key] = c.State
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *mailbox) peek() (Change, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.order) == 0 {
		return Change{}, false
	}
	k := m.order[0]
	return Change{Key: k, State: m.latest[k]}, true
}

// drop removes c if it is still the head, unchanged since peek.
func (m *mailbox) drop(c Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.order) > 0 && m.order[0] == c.Key && m.latest[c.Key] == c.State {
		delete(m.latest, c.Key)
		m.order = m.order[1:]
		if len(m.order) == 0 {
			m.order = nil // let the backing array go
		}
	}
}

// pump delivers the mailbox to out until ctx ends, then closes out.
func (m *mailbox) pump(ctx context.Context, out chan<- Change) {
	defer close(out)
	for {
		c, ok := m.peek()
		if !ok {
			select {
			case <-m.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		select {
		case out <- c:
			m.drop(c)
		case <-m.wake: // a newer value may have replaced the head
		case <-ctx.Done():
			return
		}
	}
}
