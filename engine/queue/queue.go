// Package queue is the scheduler. It keeps one queue per destination domain
// and VMTA, named "domain/vmta" as in PowerMTA; ready mail goes out over up
// to max-smtp-out connections per queue, each reused for up to
// max-msg-per-connection messages, and deferred mail waits in a timer heap
// keyed by its next attempt. Memory holds recipient metadata only; bodies
// are read from the spool when a connection is ready to send them.
package queue

import (
	"context"
	"crypto/x509"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/dns"
	"github.com/sluice-mta/sluice/engine/reply"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/pools"
	"github.com/sluice-mta/sluice/throttle"
)

// Store is the part of the spool the scheduler uses.
type Store interface {
	NewID() string
	Put(ctx context.Context, m *spool.Message, body []byte) error
	Body(id string) ([]byte, error)
	Update(id string, idx []int, rcpts []spool.Rcpt) error
	Scan(fn func(m *spool.Message) error) error
}

// Resolver finds where a domain's mail goes.
type Resolver interface {
	Route(ctx context.Context, domain string) ([]dns.Host, error)
	LookupMX(ctx context.Context, domain string) ([]dns.MX, error)
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
}

// Accounter records outcomes (the acct CSV).
type Accounter interface {
	Write(r *acct.Record)
}

// Picker chooses the virtual MTA for a message and site (package pools).
type Picker interface {
	Pick(requested, site string) (*pools.VMTA, string, error)
	Available(v *pools.VMTA, site string) bool
	Disable(v *pools.VMTA, site string, until time.Time, reason string)
	Get(name string) *pools.VMTA
}

// Classifier maps a reply to a bounce category.
type Classifier interface {
	Classify(code int, status, text string) string
}

// Options wire the scheduler.
type Options struct {
	Hostname    string // ours: Reporting-MTA of DSNs
	Pools       Picker
	Domains     func(domain, vmta string) config.DomainSettings
	Rules       func(list string) []config.PatternRule // an smtp-pattern-list by name
	Rollup      func(mxHosts []string) string          // the [mx-rollup] site of these MX hosts; nil: no rollup
	Throttle    throttle.Backend                       // shared limits and modes; nil: in-process
	NodeID      string                                 // names this node's share of per-node limits
	Shared      bool                                   // limits are shared with other nodes (Redis): be fair to them
	Delivery    config.Delivery
	STS         STSPolicies    // MTA-STS policies (tls.go); nil: none are looked up
	TLSRoots    *x509.CertPool // roots that verify MX certificates; nil: the system's
	Store       Store
	Resolver    Resolver
	Acct        Accounter
	Classifier  Classifier
	Log         *zap.Logger
	Now         func() time.Time
	IdleTimeout time.Duration // how long an idle connection waits for more mail [2s]
	// Decorate, when set, returns header lines (each ending in CRLF) to
	// prepend to the message for one transaction, e.g. the per-recipient
	// trace header of package fbl. The spool's copy is not changed.
	Decorate func(t Transaction) []byte
	// SignDSN, when set, signs each delivery status notification the
	// scheduler writes before it is spooled (DKIM: the reports come from
	// MAILER-DAEMON@Hostname, and receivers judge them like any mail). A
	// failure leaves the report unsigned rather than lost.
	SignDSN func(body []byte) ([]byte, error)
}

// Scheduler owns the queues, the retry timers and the delivery goroutines.
type Scheduler struct {
	opts Options
	log  *zap.Logger

	mu     sync.Mutex
	queues map[string]*queue
	closed bool
	wg     sync.WaitGroup // connection goroutines

	timers *timers
	ctl    control // paused queues and held jobs (control.go)

	sitesMu sync.Mutex
	sites   map[string]*siteEntry // domain → its site
	mxSites map[string]string     // sorted MX set → the first domain seen with it

	modesMu sync.Mutex
	modes   map[string]throttle.State // queue name → backoff state, kept by watchModes

	runCtx     context.Context // cancelled when Stop begins: take no new work
	stopRun    context.CancelFunc
	hardCtx    context.Context // cancelled when the shutdown timeout runs out: abort I/O
	stopHard   context.CancelFunc
	timersDone chan struct{}
}

// New returns a scheduler; Start sets it running.
func New(opts Options) *Scheduler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 2 * time.Second
	}
	if opts.Throttle == nil {
		opts.Throttle = throttle.NewLocal(throttle.WithClock(opts.Now))
	}
	s := &Scheduler{opts: opts, log: opts.Log, queues: make(map[string]*queue),
		sites: make(map[string]*siteEntry), mxSites: make(map[string]string), modes: make(map[string]throttle.State)}
	s.runCtx, s.stopRun = context.WithCancel(context.Background())
	s.hardCtx, s.stopHard = context.WithCancel(context.Background())
	s.timers = newTimers(opts.Now)
	s.timersDone = make(chan struct{})
	return s
}

// Start runs the retry-timer loop. Connections start on demand as mail
// becomes ready.
func (s *Scheduler) Start() {
	go func() {
		defer close(s.timersDone)
		modesDone := make(chan struct{})
		go func() { defer close(modesDone); s.watchModes(s.runCtx) }()
		parkedDone := make(chan struct{})
		go func() { defer close(parkedDone); s.expireParked(s.runCtx) }() // control.go
		s.timers.run(s.runCtx, s.makeReady)
		<-modesDone
		<-parkedDone
	}()
}

// Stop lets every connection finish the transaction it is in, then returns.
// When ctx ends first, transactions in flight are aborted (and their
// recipients stay pending in the spool).
func (s *Scheduler) Stop(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stopRun()
	<-s.timersDone
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.stopHard()
		<-done
	}
	s.stopHard()
}

// Enqueue takes a message that is already durable and queues each of its
// pending recipients, grouped by domain: one transaction carries all of a
// message's recipients at one domain.
func (s *Scheduler) Enqueue(m *spool.Message) { s.EnqueueBody(m, nil) }

// EnqueueBody is Enqueue given the body just spooled, from which the
// header_* acct columns are read without reading the spool back
// (acct_headers.go); nil body is Enqueue.
func (s *Scheduler) EnqueueBody(m *spool.Message, body []byte) {
	msg := &message{id: m.ID, env: m.Env, rcpts: m.Rcpts}
	if body != nil {
		s.acctHeaders(msg, body)
	}
	for i := range m.Rcpts {
		if m.Rcpts[i].State == spool.Pending {
			s.accountReceipt(msg, i)
		}
	}
	s.schedule(msg)
}

// Recover queues every unfinished recipient found in the spool. Call it
// once, after Start and before the listener opens.
func (s *Scheduler) Recover() (int, error) {
	n := 0
	err := s.opts.Store.Scan(func(m *spool.Message) error {
		n++
		s.schedule(&message{id: m.ID, env: m.Env, rcpts: m.Rcpts})
		return nil
	})
	return n, err
}

func (s *Scheduler) schedule(msg *message) {
	byDomain := make(map[string][]int)
	var order []string
	for i, r := range msg.rcpts {
		if r.State != spool.Pending {
			continue
		}
		d := domainOf(r.Addr)
		if _, ok := byDomain[d]; !ok {
			order = append(order, d)
		}
		byDomain[d] = append(byDomain[d], i)
	}
	now := s.opts.Now()
	for _, d := range order {
		idx := byDomain[d]
		for len(idx) > 0 {
			n := min(len(idx), maxRcptsPerTransaction)
			it := &item{msg: msg, domain: d, idx: idx[:n:n]}
			idx = idx[n:]
			for _, i := range it.idx {
				if n := msg.rcpts[i].NextAttempt; n.After(it.next) {
					it.next = n
				}
			}
			if it.next.After(now) {
				s.timers.push(it)
			} else {
				s.makeReady(it)
			}
		}
	}
}

// maxRcptsPerTransaction bounds an item; max-rcpt-per-message (default
// 100, what RFC 5321 §4.5.3.1.8 obliges servers to take) splits it further
// at delivery. It also keeps a pipelined group small enough not to
// deadlock (RFC 2920 §3.1).
const maxRcptsPerTransaction = 1000

// queueFor returns the queue "site/vmta", creating it. domain is the
// domain that asked: for a site that is not a rollup, the one whose MX
// hosts the queue uses.
func (s *Scheduler) queueFor(domain, site string, v *pools.VMTA) *queue {
	name := site + "/" + v.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[name]
	if q == nil {
		q = &queue{name: name, domain: domain, site: site, vmta: v, settings: s.opts.Domains(site, v.Name)}
		s.queues[name] = q
	}
	return q
}

// waitForVMTA is how long mail waits before another pick when no VMTA of
// its pool may take it (disabled, or at the warm-up cap).
const waitForVMTA = time.Minute

// assign gives it a queue: its current one while that VMTA may still send
// to the site (a retry stays where it was), else a fresh pick. It reports
// false when the item had to be parked until a VMTA has room.
func (s *Scheduler) assign(it *item) bool {
	it.q = s.current(it) // after a Reconfigure: the queue with the new settings
	if it.q != nil && s.opts.Pools.Available(it.q.vmta, it.q.site) {
		return true
	}
	site, ok := s.siteFor(it)
	if !ok {
		return false // parked until the site is known
	}
	v, pool, err := s.opts.Pools.Pick(it.msg.env.VMTA, site)
	if errors.Is(err, pools.ErrUnknown) {
		// Accepted under a name no longer configured (a restart with a new
		// config): fall back to the default choice rather than strand it.
		s.log.Warn("unknown virtual mta, using the default", zap.String("msg_id", it.msg.id), zap.String("vmta", it.msg.env.VMTA))
		v, pool, err = s.opts.Pools.Pick("", site)
	}
	if err != nil {
		if s.expireUnassigned(it, site) {
			return false
		}
		it.q = nil
		it.next = s.opts.Now().Add(waitForVMTA)
		if exp := it.msg.env.Received.Add(s.opts.Domains(site, "").BounceAfter.D()); exp.Before(it.next) {
			it.next = exp // look again when it expires, to bounce it then
		}
		s.timers.push(it)
		return false
	}
	it.q = s.queueFor(it.domain, site, v)
	it.pool = pool
	return true
}

// makeReady hands an item to an idle connection of its queue, or appends it
// to the ready list and opens a connection if the queue may have another.
func (s *Scheduler) makeReady(it *item) {
	if !s.assign(it) {
		return
	}
	q := it.q
	q.mu.Lock()
	if s.parkLocked(q, it) { // paused queue or held job: kept, not attempted; or deleted
		q.mu.Unlock()
		s.settleDoomed()
		return
	}
	if hold := q.holdUntil; !hold.IsZero() {
		if s.opts.Now().Before(hold) && len(q.idle) == 0 && q.active == 0 {
			q.mu.Unlock()
			it.next = hold // no attempt, no record: the queue is waiting to retry
			s.timers.push(it)
			return
		}
		q.holdUntil = time.Time{}
		q.probing = true // one connection first; more once it works
	}
	if n := len(q.idle); n > 0 {
		ch := q.idle[n-1]
		q.idle = q.idle[:n-1]
		q.mu.Unlock()
		ch <- it // buffered: never blocks
		return
	}
	q.ready = append(q.ready, it)
	spawn := q.active < q.settings.MaxSMTPOut && !(q.probing && q.active > 0)
	if spawn {
		q.active++
	}
	q.mu.Unlock()
	if spawn {
		s.spawn(q)
	}
}

// connected is called when a connection of q is up: a probe after a hold
// succeeded, so the queue may open its other connections.
func (s *Scheduler) connected(q *queue) {
	q.mu.Lock()
	q.holdUntil = time.Time{} // the host answers again
	if !q.probing {
		q.mu.Unlock()
		return
	}
	q.probing = false
	n := min(len(q.ready), q.settings.MaxSMTPOut-q.active)
	q.active += max(n, 0)
	q.mu.Unlock()
	for range n {
		s.spawn(q)
	}
}

// reroute moves q's ready mail elsewhere once q's VMTA may no longer send
// to its site.
func (s *Scheduler) reroute(q *queue) {
	q.mu.Lock()
	items := q.ready
	q.ready = nil
	q.mu.Unlock()
	for _, it := range items {
		s.makeReady(it)
	}
}

// spawn starts a connection goroutine for q; q.active is already counted.
func (s *Scheduler) spawn(q *queue) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		q.mu.Lock()
		q.active--
		q.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.runConn(q)
	}()
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// message is the in-memory view of one spooled message: its envelope and
// recipient states. Items of several domains may share it; mu guards rcpts.
type message struct {
	id    string
	env   spool.Envelope
	mu    sync.Mutex
	rcpts []spool.Rcpt
	// hdrs are the message's header_* acct values once read, when
	// hdrsKnown (acct_headers.go); guarded by mu.
	hdrs      map[string]string
	hdrsKnown bool
}

// item is one delivery unit: the recipients of one message at one domain.
type item struct {
	msg     *message
	domain  string
	idx     []int
	q       *queue
	pool    string // the pool q's VMTA was picked from; "" when named directly
	next    time.Time
	heapIdx int
}

// queue is "domain/vmta": its ready list, its connections and its settings.
type queue struct {
	name     string
	domain   string // a domain of the site: its MX hosts are where connections go
	site     string
	vmta     *pools.VMTA
	settings config.DomainSettings

	mu        sync.Mutex
	ready     []*item
	holdUntil time.Time    // after a connection failure: wait until then
	yield     int          // connections to start after a pause, for fairness to other nodes
	probing   bool         // the hold ended: one connection tries before the rest
	active    int          // connection goroutines
	idle      []chan *item // connections waiting for work

	retired atomic.Bool // replaced by Reconfigure (reload.go): mail moves to the new queue
}

func (q *queue) popLocked() *item {
	if len(q.ready) == 0 {
		return nil
	}
	it := q.ready[0]
	q.ready[0] = nil
	q.ready = q.ready[1:]
	return it
}

func (q *queue) removeIdleLocked(ch chan *item) bool {
	for i, c := range q.idle {
		if c == ch {
			q.idle = append(q.idle[:i], q.idle[i+1:]...)
			return true
		}
	}
	return false
}

// expireUnassigned bounces an item that no VMTA could take before its
// bounce-after ran out (every VMTA disabled for the site, or at its cap):
// waiting must not outlive the message.
func (s *Scheduler) expireUnassigned(it *item, site string) bool {
	set := s.opts.Domains(site, "")
	if s.opts.Now().Before(it.msg.env.Received.Add(set.BounceAfter.D())) {
		return false
	}
	name := it.msg.env.VMTA
	if name == "" {
		name = pools.DefaultName
	}
	it.q = &queue{name: site + "/" + name, domain: it.domain, site: site, vmta: &pools.VMTA{Name: name}, settings: set}
	s.settle(it, sameReply(len(it.idx), reply.New(451, reply.Status{4, 4, 0}, "no virtual MTA available for this site")), nil, nil)
	return true
}
