package queue

import (
	"container/heap"
	"context"
	"errors"
	"maps"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/reply"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/pools"
)

// Operator control: paused queues, held jobs and cancelled mail.
//
// A paused queue or a held job keeps its mail without attempting it: the
// item is parked at the one door every item passes on its way to a
// connection (makeReady, under the queue's lock), and items already in a
// ready list are moved to the parking lot. Resume and ReleaseJob send the
// parked items through that door again. Mail in a transaction already in
// flight finishes that attempt. Parked mail still expires at bounce-after
// (expireParked).
//
// Cancelling takes matching recipients out of wherever they wait (the
// retry timers, ready lists, the parking lot, a site lookup) and bounces
// them like any other bounce: a b record with the given category, the
// spool updated, a DSN to the sender when its source asks for DSNs; mail
// in a transaction in flight is caught when it comes back (tomb.go). The
// pause and hold state lives in memory only; a restart forgets it.
//
// Lock order: s.mu, then q.mu, then ctl.mu; t.mu and sitesMu are taken
// alone.

// control is the operator's state; its zero value is ready.
type control struct {
	some   atomic.Bool // any pause or held job: makeReady's fast path skips mu
	mu     sync.Mutex
	pauses map[string]string   // queue pattern → reason
	held   map[string]string   // job → reason
	parked map[*item]time.Time // parked items → when parked
	tombs  tombs               // recent cancels, for mail that was in flight (tomb.go)
	doomed []doomed            // items makeReady found cancelled, for settleDoomed
}

// ErrBadPattern reports a queue pattern ValidPattern refuses.
var ErrBadPattern = errors.New(`queue pattern must be "site/vmta", each part a name or a glob such as "*"`)

// NormalizePattern returns a queue pattern in the form Pause matches:
// lower-case, and "site" alone meaning "site/*".
func NormalizePattern(p string) string {
	p = strings.TrimSpace(p)
	if !strings.Contains(p, "/") {
		p += "/*"
	}
	site, vmta, _ := strings.Cut(p, "/")
	return strings.ToLower(site) + "/" + vmta
}

// ValidPattern checks a queue pattern such as "gmail.com/*", "*/vmta1" or
// "d2.test/vmta2": site and VMTA, each a name or a path.Match glob.
func ValidPattern(p string) error {
	p = NormalizePattern(p)
	site, vmta, _ := strings.Cut(p, "/")
	if site == "" || vmta == "" || strings.Count(p, "/") != 1 {
		return ErrBadPattern
	}
	if _, err := path.Match(p, "x/y"); err != nil {
		return ErrBadPattern
	}
	return nil
}

// MatchPattern reports whether a queue pattern matches the queue name
// "site/vmta".
func MatchPattern(pattern, name string) bool {
	return matchQueue(NormalizePattern(pattern), name)
}

// matchQueue reports whether the normalized pattern matches the queue
// name "site/vmta".
func matchQueue(pattern, name string) bool {
	site, vmta, _ := strings.Cut(name, "/")
	ok, _ := path.Match(pattern, strings.ToLower(site)+"/"+vmta)
	return ok
}

// pausedLocked returns the reason q is paused; c.mu is held.
func (c *control) pausedLocked(name string) (string, bool) {
	for p, reason := range c.pauses {
		if matchQueue(p, name) {
			return reason, true
		}
	}
	return "", false
}

// blockedLocked reports whether it, headed for the queue named name, must
// wait; c.mu is held.
func (c *control) blockedLocked(name string, it *item) bool {
	if _, ok := c.pausedLocked(name); ok {
		return true
	}
	if job := it.msg.env.JobID; job != "" {
		if _, ok := c.held[job]; ok {
			return true
		}
	}
	return false
}

// noteLocked updates the fast-path flag after a change; c.mu is held.
func (c *control) noteLocked() {
	c.some.Store(len(c.pauses) > 0 || len(c.held) > 0 || c.tombs.len() > 0)
}

func (c *control) parkLocked(it *item, now time.Time) {
	if c.parked == nil {
		c.parked = make(map[*item]time.Time)
	}
	c.parked[it] = now
}

// parkLocked parks it when q is paused or its job held, with q.mu held;
// it reports whether it did. This is makeReady's hook.
func (s *Scheduler) parkLocked(q *queue, it *item) bool {
	c := &s.ctl
	if !c.some.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.tombs.find(it); t != nil { // deleted while in flight (tomb.go)
		c.doomed = append(c.doomed, doomed{it, t})
		return true
	}
	if len(c.pauses) == 0 && len(c.held) == 0 {
		return false
	}
	if !c.blockedLocked(q.name, it) {
		return false
	}
	c.parkLocked(it, s.opts.Now())
	return true
}

// parkReady moves the ready items of the queues accepted by which that
// are now blocked to the parking lot, and returns how many queues it
// looked at.
func (s *Scheduler) parkReady(which func(q *queue) bool) int {
	n := 0
	now := s.opts.Now()
	for _, q := range s.queueList() {
		if !which(q) {
			continue
		}
		n++
		q.mu.Lock()
		s.ctl.mu.Lock()
		keep := q.ready[:0]
		for _, it := range q.ready {
			if s.ctl.blockedLocked(q.name, it) {
				s.ctl.parkLocked(it, now)
			} else {
				keep = append(keep, it)
			}
		}
		clear(q.ready[len(keep):])
		q.ready = keep
		s.ctl.mu.Unlock()
		q.mu.Unlock()
	}
	return n
}

// unpark sends every parked item no longer blocked through makeReady.
func (s *Scheduler) unpark() int {
	c := &s.ctl
	c.mu.Lock()
	var free []*item
	for it := range c.parked {
		if !c.blockedLocked(it.q.name, it) {
			free = append(free, it)
			delete(c.parked, it)
		}
	}
	c.mu.Unlock()
	for _, it := range free {
		s.makeReady(it)
	}
	return len(free)
}

func (s *Scheduler) queueList() []*queue {
	s.mu.Lock()
	defer s.mu.Unlock()
	qs := make([]*queue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	return qs
}

// parkedSweep is how often parked mail is checked for expiry.
const parkedSweep = 5 * time.Second

// expireParked bounces parked mail whose bounce-after has run out, as
// mail that waits for a retry would be: a pause or a hold does not keep
// a message past its life. It runs until ctx ends.
func (s *Scheduler) expireParked(ctx context.Context) {
	t := time.NewTicker(parkedSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.ctl.some.Load() {
			continue
		}
		s.pruneTombs()
		now := s.opts.Now()
		var expired []*item
		s.ctl.mu.Lock()
		for it := range s.ctl.parked {
			if !now.Before(it.msg.env.Received.Add(it.q.settings.BounceAfter.D())) {
				expired = append(expired, it)
				delete(s.ctl.parked, it)
			}
		}
		s.ctl.mu.Unlock()
		for _, it := range expired {
			r := reply.New(451, reply.Status{4, 4, 7}, "not attempted: "+s.parkReason(it))
			s.settle(it, sameReply(len(it.idx), r), nil, nil)
		}
	}
}

// parkReason says why it was parked.
func (s *Scheduler) parkReason(it *item) string {
	s.ctl.mu.Lock()
	defer s.ctl.mu.Unlock()
	if reason, ok := s.ctl.pausedLocked(it.q.name); ok {
		return "queue paused: " + reason
	}
	if reason, ok := s.ctl.held[it.msg.env.JobID]; ok {
		return "job held: " + reason
	}
	return "held"
}

// Pause stops attempts on every queue matching pattern ("gmail.com/*",
// "*/vmta1", "site/vmta"; a site alone means all its VMTAs), now and for
// queues created later, until Resume. It returns how many existing queues
// it matched; an invalid pattern matches none (check with ValidPattern).
func (s *Scheduler) Pause(pattern, reason string) int {
	if ValidPattern(pattern) != nil {
		return 0
	}
	p := NormalizePattern(pattern)
	if reason == "" {
		reason = "paused by the operator"
	}
	s.ctl.mu.Lock()
	if s.ctl.pauses == nil {
		s.ctl.pauses = make(map[string]string)
	}
	s.ctl.pauses[p] = reason
	s.ctl.noteLocked()
	s.ctl.mu.Unlock()
	n := s.parkReady(func(q *queue) bool { return matchQueue(p, q.name) })
	s.log.Warn("queue paused", zap.String("queue", p), zap.String("reason", reason), zap.Int("queues", n))
	return n
}

// Resume lifts the pauses that pattern covers: the pause of that pattern
// and of every pattern it matches as a name ("*/*" lifts them all). It
// returns how many pauses it lifted; their parked mail is made ready.
func (s *Scheduler) Resume(pattern string) int {
	if ValidPattern(pattern) != nil {
		return 0
	}
	p := NormalizePattern(pattern)
	n := 0
	s.ctl.mu.Lock()
	for q := range s.ctl.pauses {
		if q == p || matchQueue(p, q) {
			delete(s.ctl.pauses, q)
			n++
		}
	}
	s.ctl.noteLocked()
	s.ctl.mu.Unlock()
	released := s.unpark()
	s.log.Warn("queue resumed", zap.String("queue", p), zap.Int("pauses", n), zap.Int("items", released))
	return n
}

// HoldJob keeps the mail of job from being attempted until ReleaseJob
// (e.g. the complaint guard of package fbl). Mail of the job accepted
// later is held too.
func (s *Scheduler) HoldJob(job, reason string) {
	if job == "" {
		return
	}
	if reason == "" {
		reason = "held by the operator"
	}
	s.ctl.mu.Lock()
	if s.ctl.held == nil {
		s.ctl.held = make(map[string]string)
	}
	s.ctl.held[job] = reason
	s.ctl.noteLocked()
	s.ctl.mu.Unlock()
	s.parkReady(func(*queue) bool { return true })
	s.log.Warn("job held", zap.String("job_id", job), zap.String("reason", reason))
}

// ReleaseJob lets the mail of a held job go again; it reports whether the
// job was held.
func (s *Scheduler) ReleaseJob(job string) bool {
	s.ctl.mu.Lock()
	_, ok := s.ctl.held[job]
	delete(s.ctl.held, job)
	s.ctl.noteLocked()
	s.ctl.mu.Unlock()
	if ok {
		n := s.unpark()
		s.log.Warn("job released", zap.String("job_id", job), zap.Int("items", n))
	}
	return ok
}

// Paused returns the pause patterns in force and their reasons.
func (s *Scheduler) Paused() map[string]string {
	s.ctl.mu.Lock()
	defer s.ctl.mu.Unlock()
	return copyReasons(s.ctl.pauses)
}

// HeldJobs returns the held jobs and their reasons.
func (s *Scheduler) HeldJobs() map[string]string {
	s.ctl.mu.Lock()
	defer s.ctl.mu.Unlock()
	return copyReasons(s.ctl.held)
}

// copyReasons copies a name → reason map; never nil, so that it encodes
// as {} rather than null.
func copyReasons(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	maps.Copy(c, m)
	return c
}

func requestedVMTA(m *message) string {
	if m.env.VMTA == "" {
		return pools.DefaultName
	}
	return m.env.VMTA
}

// rcptFilter selects recipients of an item to cancel.
type rcptFilter func(it *item, rc *spool.Rcpt) bool

// sweep takes the items holding matching recipients out of every place
// mail waits, bounces those recipients and puts the rest back.
func (s *Scheduler) sweep(match rcptFilter, category, diag string) int {
	has := func(it *item) bool {
		it.msg.mu.Lock()
		defer it.msg.mu.Unlock()
		for _, i := range it.idx {
			if rc := &it.msg.rcpts[i]; rc.State == spool.Pending && match(it, rc) {
				return true
			}
		}
		return false
	}
	// The timers: deferred mail.
	t := s.timers
	t.mu.Lock()
	var timed []*item
	keep := t.h[:0]
	for _, it := range t.h {
		if has(it) {
			timed = append(timed, it)
		} else {
			keep = append(keep, it)
		}
	}
	clear(t.h[len(keep):])
	t.h = keep
	heap.Init(&t.h)
	t.mu.Unlock()
	// Ready lists, the parking lot and site lookups: mail due now.
	var due []*item
	for _, q := range s.queueList() {
		q.mu.Lock()
		keep := q.ready[:0]
		for _, it := range q.ready {
			if has(it) {
				due = append(due, it)
			} else {
				keep = append(keep, it)
			}
		}
		clear(q.ready[len(keep):])
		q.ready = keep
		q.mu.Unlock()
	}
	s.ctl.mu.Lock()
	for it := range s.ctl.parked {
		if has(it) {
			due = append(due, it)
			delete(s.ctl.parked, it)
		}
	}
	s.ctl.mu.Unlock()
	s.sitesMu.Lock()
	for _, e := range s.sites {
		keep := e.waiting[:0]
		for _, it := range e.waiting {
			if has(it) {
				due = append(due, it)
			} else {
				keep = append(keep, it)
			}
		}
		clear(e.waiting[len(keep):])
		e.waiting = keep
	}
	s.sitesMu.Unlock()

	// One bounce (and at most one DSN) per message, whatever its items.
	n := 0
	var order []*message
	hits := make(map[*message][]part)
	put := func(it *item, back func(*item)) {
		hit, rest := s.split(it, match)
		if len(rest) > 0 {
			back(&item{msg: it.msg, domain: it.domain, idx: rest, q: it.q, pool: it.pool, next: it.next})
		}
		if len(hit) > 0 {
			if _, ok := hits[it.msg]; !ok {
				order = append(order, it.msg)
			}
			hits[it.msg] = append(hits[it.msg], part{it, hit})
			n += len(hit)
		}
	}
	for _, it := range timed {
		put(it, s.timers.push)
	}
	for _, it := range due {
		put(it, s.makeReady)
	}
	for _, m := range order {
		s.bounceCancelled(m, hits[m], category, diag)
	}
	if n > 0 {
		s.log.Warn("queued mail deleted", zap.Int("rcpts", n), zap.String("category", category), zap.String("reason", diag))
	}
	return n
}

// part is some recipients of an item.
type part struct {
	it  *item
	idx []int
}

// split divides it's recipients into those match selects and the rest.
func (s *Scheduler) split(it *item, match rcptFilter) (hit, rest []int) {
	it.msg.mu.Lock()
	defer it.msg.mu.Unlock()
	for _, i := range it.idx {
		if rc := &it.msg.rcpts[i]; rc.State == spool.Pending && match(it, rc) {
			hit = append(hit, i)
		} else {
			rest = append(rest, i)
		}
	}
	return hit, rest
}

// bounceCancelled bounces the recipients parts hold, all of msg, as
// settle bounces: the spool learns their final state, each gets a b record
// of category, and the sender one DSN when the source asked for DSNs.
func (s *Scheduler) bounceCancelled(msg *message, parts []part, category, diag string) {
	now := s.opts.Now()
	r := reply.New(550, reply.Status{5, 0, 0}, diag)
	hdrs := s.acctHeaders(msg, nil) // before Update may delete the body
	var failed []failure
	var idx []int
	var recs []*acct.Record
	var states []spool.Rcpt
	msg.mu.Lock()
	for _, p := range parts {
		q := p.it.q
		if q == nil { // never given a queue: name it as its r record does
			name := requestedVMTA(msg)
			q = &queue{name: p.it.domain + "/" + name, domain: p.it.domain, site: p.it.domain, vmta: &pools.VMTA{Name: name}}
		}
		one := &item{msg: msg, domain: p.it.domain, idx: p.idx, q: q, pool: p.it.pool}
		for _, i := range p.idx {
			rc := &msg.rcpts[i]
			rc.State = spool.Bounced
			rc.LastReply = r.Error()
			rec := s.record(one, rc, r, nil, now)
			rec.Type, rec.DSNAction, rec.BounceCat = acct.TypeBounced, "failed", category
			rec.DSNDiag = "admin;" + oneLine(diag)
			rec.Headers = hdrs
			recs = append(recs, rec)
			failed = append(failed, failure{rcpt: *rc, reply: r})
			idx = append(idx, i)
			states = append(states, *rc)
		}
	}
	msg.mu.Unlock()
	wantDSN := msg.env.BounceDSN && msg.env.From != ""
	var body []byte
	if wantDSN {
		body, _ = s.opts.Store.Body(msg.id) // before Update may delete it
	}
	if err := s.opts.Store.Update(msg.id, idx, states); err != nil {
		s.log.Error("spool update failed", zap.String("msg_id", msg.id), zap.Error(err))
	}
	for _, rec := range recs {
		s.opts.Acct.Write(rec)
	}
	if wantDSN {
		s.sendDSN(msg, failed, body, now)
	}
}
