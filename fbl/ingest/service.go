// Package ingest puts the fbl packages to work inside the daemon: it reads
// the complaint reports, bounces and mailto unsubscriptions that arrive at
// Sluice's own addresses (by SMTP, the CLI or the admin API), attributes
// them, writes their accounting records (f, rb), suppresses the addresses
// the rules say to, feeds the complaint-rate guard and holds a job that
// crosses it, and cancels mail already queued for a newly suppressed
// address. It holds no global state; Start owns its only goroutine.
package ingest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/fbl/guard"
	"github.com/sluice-mta/sluice/fbl/suppress"
	"github.com/sluice-mta/sluice/fbl/trace"
)

// Accounter writes accounting records (engine/acct.Writer).
type Accounter interface{ Write(r *acct.Record) }

// JobHolder holds a job's queued mail until an operator releases it
// (engine/queue.Scheduler.HoldJob).
type JobHolder interface{ HoldJob(job, reason string) }

// HeldLister lists the jobs the queue holds, job → reason
// (engine/queue.Scheduler.HeldJobs): a job the guard paused that the
// operator has released is judged afresh.
type HeldLister interface{ HeldJobs() map[string]string }

// Canceller bounces the mail queued for an address, or "@domain"
// (engine/queue.Scheduler.CancelRecipient).
type Canceller interface {
	CancelRecipient(addr, category, diag string) int
}

// Options configure a Service.
type Options struct {
	Keys        trace.Keys // [fbl] secret and old-secrets
	TraceHeader string     // [trace.HeaderName]
	UnsubKeys   trace.Keys // [unsubscribe] secret (may equal Keys)

	FBLAddrs     []string // complaint addresses
	BounceAddrs  []string // return-path addresses; subaddresses included
	MailtoDomain string   // unsub+TOKEN@ this domain

	SuppressTypes  []string // feedback types that suppress [abuse, fraud]
	HardCategories []string // bounce categories that suppress
	// DeliveryBounces makes hard bounces at delivery (b records seen by
	// Observe) suppress too, not only those reported by DSN.
	DeliveryBounces bool
	SoftLimit       int           // soft bounces that suppress; 0 = off
	SoftWindow      time.Duration // … within this long

	Guard      guard.Options // the complaint-rate guard
	Store      suppress.Store
	Acct       Accounter
	Classifier *bounce.Classifier
	Log        *zap.Logger
	Now        func() time.Time
	// SyncEvery is how often Start's goroutine looks for guard-held jobs the operator
	// released [5s].
	SyncEvery time.Duration
}

// Service processes reports. Create it with New, call Start, and set the
// queue hooks with SetQueue once the scheduler exists.
type Service struct {
	o     Options
	log   *zap.Logger
	guard *guard.Guard

	fbl    map[string]bool
	bounce map[string]bool // "local@domain", local without subaddress

	holder atomic.Pointer[JobHolder]
	cancel atomic.Pointer[Canceller]
	held   atomic.Pointer[HeldLister]

	heldByGuard map[string]bool // jobs tripped and held; the service goroutine only

	events  chan event
	dropped atomic.Uint64

	softMu sync.Mutex
	soft   map[string][]time.Time
}

type event struct {
	trip  *guard.Trip
	entry *suppress.Entry
}

// eventBuffer bounds the work queued from Observe.
const eventBuffer = 4096

// maxSoftTracked bounds the addresses whose soft bounces are counted.
const maxSoftTracked = 100_000

// New returns a Service.
func New(o Options) *Service {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TraceHeader == "" {
		o.TraceHeader = trace.HeaderName
	}
	if o.Guard.Now == nil {
		o.Guard.Now = o.Now
	}
	s := &Service{o: o, log: o.Log, guard: guard.New(o.Guard), fbl: map[string]bool{}, bounce: map[string]bool{},
		events: make(chan event, eventBuffer), soft: map[string][]time.Time{}, heldByGuard: map[string]bool{}}
	for _, a := range o.FBLAddrs {
		s.fbl[strings.ToLower(a)] = true
	}
	for _, a := range o.BounceAddrs {
		s.bounce[strings.ToLower(a)] = true
	}
	return s
}

// SetQueue wires the scheduler's methods; any may be nil while the
// scheduler lacks it.
func (s *Service) SetQueue(h JobHolder, c Canceller, l HeldLister) {
	if h != nil {
		s.holder.Store(&h)
	}
	if c != nil {
		s.cancel.Store(&c)
	}
	if l != nil {
		s.held.Store(&l)
	}
}

// syncReleased forgets the guard pause of every job the queue no longer
// holds (`sluice resume job`): its counts start afresh.
func (s *Service) syncReleased() {
	l := s.held.Load()
	if l == nil {
		return
	}
	if len(s.heldByGuard) == 0 {
		return
	}
	held := (*l).HeldJobs()
	for job := range s.heldByGuard {
		if _, ok := held[job]; !ok {
			delete(s.heldByGuard, job)
			s.guard.Resume(job)
			s.log.Info("complaint guard reset after release", zap.String("job_id", job))
		}
	}
}

// Guard returns the complaint-rate guard (for status pages and resume).
func (s *Service) Guard() *guard.Guard { return s.guard }

// ResumeJob forgets a guard pause of job, so that it can trip again; the
// caller releases the queue's hold itself.
func (s *Service) ResumeJob(job string) bool { return s.guard.Resume(job) }

// Suppressed reports whether rcpt is suppressed for scope ("" global, or a
// tenant) — the listener's RCPT check and the inject API's.
func (s *Service) Suppressed(ctx context.Context, rcpt, scope string) (bool, error) {
	_, ok, err := s.o.Store.IsSuppressed(ctx, scope, rcpt)
	if errors.Is(err, suppress.ErrInvalid) {
		return false, nil // an address the store cannot hold is not on the list
	}
	return ok, err
}

// Start subscribes to the suppression list at once (so that no entry added
// after Start returns is missed) and starts the goroutine that cancels
// queued mail for every new global suppression (from this node or, with
// Redis, any other) and carries out the work Observe queued. It runs until
// ctx ends; the returned channel is closed when it has stopped.
func (s *Service) Start(ctx context.Context) <-chan struct{} {
	sub := s.o.Store.Subscribe(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx, sub)
	}()
	return done
}

func (s *Service) run(ctx context.Context, sub <-chan suppress.Entry) {
	every := s.o.SyncEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub:
			if !ok {
				return
			}
			s.cancelQueued(e)
		case ev := <-s.events:
			s.handle(ctx, ev)
		case <-tick.C:
			s.syncReleased()
			if n := s.dropped.Swap(0); n > 0 { // at most one line per tick
				s.log.Warn("fbl events dropped", zap.Uint64("count", n))
			}
		}
	}
}

// cancelQueued bounces queued mail to a newly suppressed address. Scoped
// entries (one tenant's unsubscribe) do not cancel: the queue does not know
// the tenants of the mail it holds, and other tenants may still mail them.
func (s *Service) cancelQueued(e suppress.Entry) {
	if e.Scope != "" {
		return
	}
	c := s.cancel.Load()
	if c == nil {
		return
	}
	if n := (*c).CancelRecipient(e.Addr, "policy-related", "suppressed: "+string(e.Reason)); n > 0 {
		s.log.Info("queued mail cancelled", zap.String("rcpt", e.Addr), zap.String("reason", string(e.Reason)), zap.Int("count", n))
	}
}

func (s *Service) handle(ctx context.Context, ev event) {
	if ev.trip != nil {
		s.tripped(*ev.trip)
	}
	if ev.entry != nil {
		s.add(ctx, *ev.entry)
	}
}

// tripped acts on a guard trip: a job is held, a VMTA only reported.
func (s *Service) tripped(t guard.Trip) {
	fields := []zap.Field{zap.Float64("rate", t.Rate), zap.Int("complaints", t.Complaints),
		zap.Int("deliveries", t.Deliveries), zap.Float64("max_rate", s.maxRate())}
	if t.Kind == guard.KindVMTA {
		s.log.Warn("complaint rate over limit", append(fields, zap.String("vmta", t.Name))...)
		return
	}
	h := s.holder.Load()
	if h == nil {
		s.log.Error("complaint guard tripped but the queue cannot hold jobs", append(fields, zap.String("job_id", t.Name))...)
		return
	}
	(*h).HoldJob(t.Name, "complaint rate over max-complaint-rate")
	s.heldByGuard[t.Name] = true
	s.log.Warn("job paused by complaint guard", append(fields, zap.String("job_id", t.Name))...)
}

// Observe sees every accounting record (acct.Writer.Observe): deliveries
// feed the guard, hard bounces at delivery suppress, and soft ones count.
// It never blocks: work is queued for the service goroutine.
func (s *Service) Observe(r *acct.Record) {
	switch r.Type {
	case acct.TypeDelivered:
		for _, t := range s.guard.Delivered(r.JobID, r.VMTA) {
			s.queue(event{trip: &t})
		}
	case acct.TypeBounced:
		if !s.o.DeliveryBounces || r.BounceCat == "policy-related" {
			return // our own cancellations among them
		}
		if slices.Contains(s.o.HardCategories, r.BounceCat) {
			s.queue(event{entry: &suppress.Entry{Addr: r.Rcpt, Reason: suppress.HardBounce, Note: "delivery: " + r.BounceCat}})
		} else if r.BounceCat == "quota-issues" {
			if e := s.softBounce(r.Rcpt); e != nil {
				s.queue(event{entry: e})
			}
		}
	}
}

func (s *Service) maxRate() float64 {
	if s.o.Guard.MaxRate > 0 {
		return s.o.Guard.MaxRate
	}
	return 0.003 // guard's default
}

func (s *Service) queue(ev event) {
	select {
	case s.events <- ev:
	default:
		s.dropped.Add(1)
	}
}

// add suppresses e, logging failures (the work came from Observe).
func (s *Service) add(ctx context.Context, e suppress.Entry) {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.o.Store.Add(actx, e); err != nil {
		s.log.Error("suppression failed", zap.String("rcpt", e.Addr), zap.String("reason", string(e.Reason)), zap.Error(err))
		return
	}
	s.log.Info("recipient suppressed", zap.String("rcpt", e.Addr), zap.String("reason", string(e.Reason)), zap.String("note", e.Note))
}

// softBounce counts one soft bounce of addr and returns the entry to add
// when the count within SoftWindow reaches SoftLimit. Counts are this
// node's, in memory.
func (s *Service) softBounce(addr string) *suppress.Entry {
	if s.o.SoftLimit <= 0 || addr == "" {
		return nil
	}
	a := strings.ToLower(addr)
	now := s.o.Now()
	s.softMu.Lock()
	defer s.softMu.Unlock()
	ts := s.soft[a]
	if ts == nil && len(s.soft) >= maxSoftTracked {
		for k, v := range s.soft { // forget what has aged out
			if len(v) == 0 || now.Sub(v[len(v)-1]) > s.o.SoftWindow {
				delete(s.soft, k)
			}
		}
		if len(s.soft) >= maxSoftTracked {
			return nil
		}
	}
	keep := ts[:0]
	for _, t := range ts {
		if now.Sub(t) <= s.o.SoftWindow {
			keep = append(keep, t)
		}
	}
	keep = append(keep, now)
	if len(keep) >= s.o.SoftLimit {
		delete(s.soft, a)
		return &suppress.Entry{Addr: addr, Reason: suppress.HardBounce, Note: "soft bounces over the limit"}
	}
	s.soft[a] = keep
	return nil
}
