package queue

import "go.uber.org/zap"

// Reconfigure makes new domain settings (Options.Domains, which the daemon
// points at the live config) apply to existing queues: each queue is
// replaced by a fresh one of the same name with the new settings. The old
// one is retired: its ready mail moves over now, and mail that still
// refers to it (deferred, parked, or in a transaction in flight) moves at
// its next pass through assign. Its open connections finish what they
// carry and close once idle. Limits and modes are keyed by queue name, so
// they carry over; pauses and held jobs are untouched.
func (s *Scheduler) Reconfigure() int {
	s.mu.Lock()
	old := s.queues
	s.queues = make(map[string]*queue, len(old))
	var moved []*queue
	for name, q := range old {
		q.mu.Lock()
		nq := &queue{name: name, domain: q.domain, site: q.site, vmta: q.vmta, settings: s.opts.Domains(q.site, q.vmta.Name),
			holdUntil: q.holdUntil}
		q.mu.Unlock()
		s.queues[name] = nq
		q.retired.Store(true)
		moved = append(moved, q)
	}
	s.mu.Unlock()
	for _, q := range moved {
		q.mu.Lock()
		items := q.ready
		q.ready = nil
		q.mu.Unlock()
		for _, it := range items {
			s.makeReady(it)
		}
	}
	s.log.Info("queues reconfigured", zap.Int("queues", len(moved)))
	return len(moved)
}

// current returns the queue that replaced q after a Reconfigure, or q.
func (s *Scheduler) current(it *item) *queue {
	q := it.q
	if q == nil || !q.retired.Load() {
		return q
	}
	return s.queueFor(it.domain, q.site, q.vmta)
}
