package queue

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// timers holds deferred items in a min-heap keyed by their next attempt.
type timers struct {
	now  func() time.Time
	mu   sync.Mutex
	h    itemHeap
	wake chan struct{}
}

func newTimers(now func() time.Time) *timers {
	return &timers{now: now, wake: make(chan struct{}, 1)}
}

func (t *timers) push(it *item) {
	t.mu.Lock()
	heap.Push(&t.h, it)
	first := t.h[0] == it
	t.mu.Unlock()
	if first {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

func (t *timers) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.h)
}

// run moves due items to ready until ctx ends.
func (t *timers) run(ctx context.Context, ready func(*item)) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := t.now()
		var due []*item
		wait := time.Hour
		t.mu.Lock()
		for len(t.h) > 0 && !t.h[0].next.After(now) {
			due = append(due, heap.Pop(&t.h).(*item))
		}
		if len(t.h) > 0 {
			wait = t.h[0].next.Sub(now)
		}
		t.mu.Unlock()
		for _, it := range due {
			ready(it)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-timer.C:
		}
	}
}

type itemHeap []*item

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.heapIdx = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	it.heapIdx = -1
	return it
}
