package queue

import (
	"slices"
	"time"

	"github.com/sluice-mta/sluice/throttle"
)

// QueueStatus describes one queue at one moment, for the admin API.
type QueueStatus struct {
	Name        string    `json:"name"` // "site/vmta"
	Site        string    `json:"site"`
	VMTA        string    `json:"vmta"`
	Queued      int       `json:"queued"`                // recipients waiting: ready + deferred + parked
	Ready       int       `json:"ready"`                 // due now, waiting for a connection
	Deferred    int       `json:"deferred"`              // waiting for their next attempt
	Parked      int       `json:"parked"`                // kept by a pause or a held job
	Connections int       `json:"connections"`           // open (or opening) outbound connections
	Mode        string    `json:"mode"`                  // "normal", "backoff" or "paused"
	Reason      string    `json:"reason,omitempty"`      // why, when not normal
	RetryAt     time.Time `json:"retry_at,omitzero"`     // after a connection failure: no new connection before
	NextAttempt time.Time `json:"next_attempt,omitzero"` // the earliest deferred attempt
	Unassigned  bool      `json:"unassigned,omitempty"`  // mail not yet given a VMTA (site lookup, no VMTA free)
}

// Queues returns the status of every queue holding mail or connections,
// sorted by name. Recipients in a transaction in flight are not counted.
// It walks all waiting mail: meant for the operator, not a hot path.
func (s *Scheduler) Queues() []QueueStatus {
	type key = string
	st := make(map[key]*QueueStatus)
	get := func(it *item) *QueueStatus {
		name := ""
		if it.q != nil {
			name = it.q.name
		} else {
			name = it.domain + "/" + requestedVMTA(it.msg)
		}
		qs := st[name]
		if qs == nil {
			qs = &QueueStatus{Name: name, Site: it.domain, VMTA: requestedVMTA(it.msg), Unassigned: it.q == nil}
			if it.q != nil {
				qs.Site, qs.VMTA = it.q.site, it.q.vmta.Name
			}
			st[name] = qs
		}
		return qs
	}
	for _, q := range s.queueList() {
		q.mu.Lock()
		qs := &QueueStatus{Name: q.name, Site: q.site, VMTA: q.vmta.Name, Connections: q.active, RetryAt: q.holdUntil}
		for _, it := range q.ready {
			qs.Ready += len(it.idx)
		}
		q.mu.Unlock()
		st[q.name] = qs
	}
	s.timers.mu.Lock()
	for _, it := range s.timers.h {
		qs := get(it)
		qs.Deferred += len(it.idx)
		if qs.NextAttempt.IsZero() || it.next.Before(qs.NextAttempt) {
			qs.NextAttempt = it.next
		}
	}
	s.timers.mu.Unlock()
	s.sitesMu.Lock()
	for _, e := range s.sites {
		for _, it := range e.waiting {
			get(it).Ready += len(it.idx)
		}
	}
	s.sitesMu.Unlock()
	s.ctl.mu.Lock()
	for it := range s.ctl.parked {
		get(it).Parked += len(it.idx)
	}
	s.ctl.mu.Unlock()

	now := s.opts.Now()
	out := make([]QueueStatus, 0, len(st))
	for _, qs := range st {
		qs.Queued = qs.Ready + qs.Deferred + qs.Parked
		if qs.Queued == 0 && qs.Connections == 0 && qs.Unassigned {
			continue
		}
		if !qs.RetryAt.After(now) {
			qs.RetryAt = time.Time{}
		}
		qs.Mode = "normal"
		s.ctl.mu.Lock()
		reason, paused := s.ctl.pausedLocked(qs.Name)
		s.ctl.mu.Unlock()
		switch {
		case paused:
			qs.Mode, qs.Reason = "paused", reason
		default:
			s.modesMu.Lock()
			m, ok := s.modes[qs.Name]
			s.modesMu.Unlock()
			if ok && m.Mode == throttle.ModeBackoff && (m.Until.IsZero() || now.Before(m.Until)) {
				qs.Mode, qs.Reason = "backoff", m.Reason
			}
		}
		if qs.Mode == "normal" && !qs.RetryAt.IsZero() {
			qs.Reason = "retrying after a connection failure"
		}
		out = append(out, *qs)
	}
	slices.SortFunc(out, func(a, b QueueStatus) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}
