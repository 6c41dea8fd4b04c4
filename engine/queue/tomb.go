package queue

import (
	"strings"
	"time"

	"github.com/sluice-mta/sluice/engine/spool"
)

// Cancelling mail in flight. A cancel sweeps every place mail waits, but a
// transaction in flight holds its item elsewhere, and a deferral brings
// it back later. So each cancel also leaves a tombstone for as long as a
// transaction can last: mail of a message received before the cancel that
// passes makeReady in that time is bounced there, and when the window
// ends one more sweep takes what went back to the retry timers meanwhile.
// Tombstones are kept in maps (an address, a domain, a job) so that many
// of them, as a suppression import makes, cost a few lookups per item.

// tomb is one cancel.
type tomb struct {
	kind           byte   // 'a' address, 'd' domain, 'j' job, 'q' queue pattern
	key            string // lower-case address or domain, job, normalized pattern
	at, until      time.Time
	category, diag string
}

// match reports whether rc of it is concerned by t.
func (t *tomb) match(it *item, rc *spool.Rcpt) bool {
	if it.msg.env.Received.After(t.at) {
		return false // accepted after the cancel: not what was deleted
	}
	switch t.kind {
	case 'a':
		return strings.EqualFold(rc.Addr, t.key)
	case 'd':
		return it.domain == t.key
	case 'j':
		return it.msg.env.JobID == t.key
	case 'q':
		if it.q != nil && matchQueue(t.key, it.q.name) {
			return true
		}
		return matchQueue(t.key, it.domain+"/"+requestedVMTA(it.msg))
	}
	return false
}

// tombs holds the tombstones in force.
type tombs struct {
	byKey    map[string]*tomb // kind + key
	patterns []*tomb
}

func (ts *tombs) len() int { return len(ts.byKey) + len(ts.patterns) }

func (ts *tombs) add(t *tomb) {
	if t.kind == 'q' {
		ts.patterns = append(ts.patterns, t)
		return
	}
	if ts.byKey == nil {
		ts.byKey = make(map[string]*tomb)
	}
	ts.byKey[string(t.kind)+t.key] = t
}

// find returns a tombstone concerning a pending recipient of it, or nil.
func (ts *tombs) find(it *item) *tomb {
	if ts.len() == 0 {
		return nil
	}
	it.msg.mu.Lock()
	defer it.msg.mu.Unlock()
	for _, i := range it.idx {
		if rc := &it.msg.rcpts[i]; rc.State == spool.Pending {
			if t := ts.forRcpt(it, rc); t != nil {
				return t
			}
		}
	}
	return nil
}

// forRcpt returns a tombstone concerning rc of it, or nil.
func (ts *tombs) forRcpt(it *item, rc *spool.Rcpt) *tomb {
	for _, k := range [...]string{"a" + strings.ToLower(rc.Addr), "d" + it.domain, "j" + it.msg.env.JobID} {
		if t := ts.byKey[k]; t != nil && t.match(it, rc) {
			return t
		}
	}
	for _, t := range ts.patterns {
		if t.match(it, rc) {
			return t
		}
	}
	return nil
}

// expire removes the tombstones whose window has ended and returns them.
func (ts *tombs) expire(now time.Time) []*tomb {
	var out []*tomb
	for k, t := range ts.byKey {
		if now.After(t.until) {
			out = append(out, t)
			delete(ts.byKey, k)
		}
	}
	keep := ts.patterns[:0]
	for _, t := range ts.patterns {
		if now.After(t.until) {
			out = append(out, t)
		} else {
			keep = append(keep, t)
		}
	}
	clear(ts.patterns[len(keep):])
	ts.patterns = keep
	return out
}

// doomed is an item makeReady found concerned by a tombstone.
type doomed struct {
	it *item
	t  *tomb
}

// inflightWindow bounds how long a transaction can hold its items: the
// delivery timeouts of one connection and one transaction.
func (s *Scheduler) inflightWindow() time.Duration {
	d := s.opts.Delivery
	w := d.ConnectTimeout.D() + 3*d.CommandTimeout.D() + d.DataTimeout.D()
	if w <= 0 {
		return 15 * time.Minute
	}
	return max(w, time.Minute)
}

// CancelRecipient bounces the queued mail to addr (compared without
// regard to case), or to every address at a domain when addr is
// "@domain", with b records of category. It returns how many recipients
// it bounced now; mail in a transaction in flight is bounced when it
// comes back (unless that transaction delivered it).
func (s *Scheduler) CancelRecipient(addr, category, diag string) int {
	addr = strings.ToLower(strings.TrimSpace(addr))
	if addr == "" || addr == "@" {
		return 0
	}
	if strings.HasPrefix(addr, "@") {
		return s.cancel(&tomb{kind: 'd', key: addr[1:], category: category, diag: diag})
	}
	return s.cancel(&tomb{kind: 'a', key: addr, category: category, diag: diag})
}

// CancelJob bounces the queued mail of job (its X-Job) with b records of
// category; it returns how many recipients it bounced now (see
// CancelRecipient for mail in flight).
func (s *Scheduler) CancelJob(job, category, diag string) int {
	if job == "" {
		return 0
	}
	return s.cancel(&tomb{kind: 'j', key: job, category: category, diag: diag})
}

// CancelQueue bounces the queued mail of the queues matching pattern (as
// Pause takes it) with b records of category; it returns how many
// recipients it bounced now (see CancelRecipient for mail in flight).
// Mail not yet given a queue matches by its domain and requested VMTA.
func (s *Scheduler) CancelQueue(pattern, category, diag string) int {
	if ValidPattern(pattern) != nil {
		return 0
	}
	return s.cancel(&tomb{kind: 'q', key: NormalizePattern(pattern), category: category, diag: diag})
}

// cancel leaves t, then sweeps the waiting mail it concerns.
func (s *Scheduler) cancel(t *tomb) int {
	if t.category == "" {
		t.category = "admin"
	}
	if t.diag == "" {
		t.diag = "deleted by the operator"
	}
	t.at = s.opts.Now()
	t.until = t.at.Add(s.inflightWindow())
	s.ctl.mu.Lock()
	s.ctl.tombs.add(t)
	s.ctl.noteLocked()
	s.ctl.mu.Unlock()
	return s.sweep(t.match, t.category, t.diag)
}

// settleDoomed bounces what makeReady found cancelled and sends the rest
// of those items on.
func (s *Scheduler) settleDoomed() {
	s.ctl.mu.Lock()
	ds := s.ctl.doomed
	s.ctl.doomed = nil
	s.ctl.mu.Unlock()
	for _, d := range ds {
		hit, rest := s.split(d.it, d.t.match)
		if len(rest) > 0 {
			it := d.it
			s.makeReady(&item{msg: it.msg, domain: it.domain, idx: rest, q: it.q, pool: it.pool, next: it.next})
		}
		if len(hit) > 0 {
			s.bounceCancelled(d.it.msg, []part{{d.it, hit}}, d.t.category, d.t.diag)
		}
	}
}

// retryLater puts a deferred item on the retry timers; recipients a
// cancel made while they were in flight concerns are bounced instead.
func (s *Scheduler) retryLater(it *item) {
	for s.ctl.some.Load() {
		s.ctl.mu.Lock()
		t := s.ctl.tombs.find(it)
		s.ctl.mu.Unlock()
		if t == nil {
			break
		}
		hit, rest := s.split(it, t.match)
		if len(hit) > 0 {
			s.bounceCancelled(it.msg, []part{{it, hit}}, t.category, t.diag)
		}
		if len(rest) == 0 {
			return
		}
		it = &item{msg: it.msg, domain: it.domain, idx: rest, q: it.q, pool: it.pool, next: it.next}
	}
	s.timers.push(it)
}

// pruneTombs ends the tombstones whose window has passed, with one last
// sweep for each (grouped by what they bounce with).
func (s *Scheduler) pruneTombs() {
	s.ctl.mu.Lock()
	old := s.ctl.tombs.expire(s.opts.Now())
	s.ctl.noteLocked()
	s.ctl.mu.Unlock()
	type why struct{ category, diag string }
	groups := map[why]*tombs{}
	for _, t := range old {
		k := why{t.category, t.diag}
		if groups[k] == nil {
			groups[k] = &tombs{}
		}
		groups[k].add(t)
	}
	for k, ts := range groups {
		s.sweep(func(it *item, rc *spool.Rcpt) bool { return ts.forRcpt(it, rc) != nil }, k.category, k.diag)
	}
}
