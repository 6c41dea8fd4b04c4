package admin

import (
	"sync"
	"time"

	"github.com/sluice-mta/sluice/engine/acct"
)

// Tracker counts what the accounting records tell: traffic per minute,
// per queue its deliveries and last events, per job its outcomes. It sees
// every record through acct.Writer.Observe and keeps bounded memory: at
// most maxQueues queues and maxJobs jobs, the least recently active
// forgotten first.
type Tracker struct {
	now   func() time.Time
	start time.Time

	mu     sync.Mutex
	total  Counts
	minute ring60 // traffic per minute, the last hour
	queues map[string]*queueTrack
	jobs   map[string]*jobTrack
}

const (
	maxQueues = 20000
	maxJobs   = 10000
	// EventsPerQueue is how many recent events a queue keeps.
	EventsPerQueue = 50
)

// Counts are recipients by outcome, as accounting records count them: a
// deferred recipient counts once per failed attempt.
type Counts struct {
	Received   int64 `json:"received"`
	Delivered  int64 `json:"delivered"`
	Deferred   int64 `json:"deferred"`
	Bounced    int64 `json:"bounced"`
	Complained int64 `json:"complained"`
}

func (c *Counts) add(typ string) bool {
	switch typ {
	case acct.TypeReceived:
		c.Received++
	case acct.TypeDelivered:
		c.Delivered++
	case acct.TypeTransient, acct.TypeTransientQueue:
		c.Deferred++
	case acct.TypeBounced, acct.TypeRemoteBounce:
		c.Bounced++
	case acct.TypeFeedback:
		c.Complained++
	default:
		return false
	}
	return true
}

func (c *Counts) plus(o Counts) {
	c.Received += o.Received
	c.Delivered += o.Delivered
	c.Deferred += o.Deferred
	c.Bounced += o.Bounced
	c.Complained += o.Complained
}

// ring60 holds one Counts per minute for the last 60 minutes.
type ring60 struct {
	slot [60]Counts
	at   [60]int64 // the minute (Unix/60) each slot holds
}

func (r *ring60) bucket(now time.Time) *Counts {
	m := now.Unix() / 60
	i := m % 60
	if r.at[i] != m {
		r.at[i], r.slot[i] = m, Counts{}
	}
	return &r.slot[i]
}

// since sums the minutes that started less than d ago (d ≤ 1h).
func (r *ring60) since(now time.Time, d time.Duration) Counts {
	var c Counts
	m := now.Unix() / 60
	for i := range r.slot {
		if age := m - r.at[i]; age >= 0 && age < int64(d/time.Minute) {
			c.plus(r.slot[i])
		}
	}
	return c
}

// Event is one thing that happened to a queue.
type Event struct {
	Time   time.Time `json:"time"`
	Type   string    `json:"type"` // an acct record type (d, b, t, …) or "pause", "resume", "delete"
	Rcpt   string    `json:"rcpt,omitempty"`
	Job    string    `json:"job,omitempty"`
	Status string    `json:"status,omitempty"`
	Text   string    `json:"text,omitempty"` // the diagnostic, or what the operator did
}

type queueTrack struct {
	last      time.Time
	minute    ring60
	events    [EventsPerQueue]Event
	n         int // events ever added
	lastError *Event
}

type jobTrack struct {
	last   time.Time
	counts Counts
}

// NewTracker returns an empty tracker; now may be nil (time.Now).
func NewTracker(now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{now: now, start: now(), queues: make(map[string]*queueTrack), jobs: make(map[string]*jobTrack)}
}

// Observe takes in one accounting record; pass it to acct.Writer.Observe.
func (t *Tracker) Observe(r *acct.Record) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.total.add(r.Type) {
		return
	}
	t.minute.bucket(now).add(r.Type)
	if r.JobID != "" {
		j := t.jobs[r.JobID]
		if j == nil {
			t.evictLocked(len(t.jobs), maxJobs, func() { evictOldest(t.jobs, func(j *jobTrack) time.Time { return j.last }) })
			j = &jobTrack{}
			t.jobs[r.JobID] = j
		}
		j.last = now
		j.counts.add(r.Type)
	}
	if r.Queue == "" || r.Type == acct.TypeReceived {
		return // an r record names the requested VMTA, not the queue
	}
	q := t.queueLocked(r.Queue, now)
	q.minute.bucket(now).add(r.Type)
	ev := Event{Time: r.TimeLogged, Type: r.Type, Rcpt: r.Rcpt, Job: r.JobID, Status: r.DSNStatus, Text: r.DSNDiag}
	if ev.Time.IsZero() {
		ev.Time = now
	}
	q.addLocked(ev)
}

func (t *Tracker) evictLocked(n, limit int, evict func()) {
	if n >= limit {
		evict()
	}
}

func evictOldest[T any](m map[string]T, last func(T) time.Time) {
	var oldest string
	var at time.Time
	for k, v := range m {
		if l := last(v); oldest == "" || l.Before(at) {
			oldest, at = k, l
		}
	}
	delete(m, oldest)
}

func (t *Tracker) queueLocked(name string, now time.Time) *queueTrack {
	q := t.queues[name]
	if q == nil {
		t.evictLocked(len(t.queues), maxQueues, func() { evictOldest(t.queues, func(q *queueTrack) time.Time { return q.last }) })
		q = &queueTrack{}
		t.queues[name] = q
	}
	q.last = now
	return q
}

func (q *queueTrack) addLocked(ev Event) {
	q.events[q.n%EventsPerQueue] = ev
	q.n++
	if ev.Type != acct.TypeDelivered && ev.Type != acct.TypeReceived && ev.Text != "" && ev.Type != "resume" && ev.Type != "pause" {
		e := ev
		q.lastError = &e
	}
}

// Note records an operator action on a queue (pause, resume, delete).
func (t *Tracker) Note(queue, typ, text string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.queueLocked(queue, now).addLocked(Event{Time: now, Type: typ, Text: text})
}

// Traffic is the counts of the last minute, the last hour and since start.
type Traffic struct {
	LastMinute Counts    `json:"last_minute"`
	LastHour   Counts    `json:"last_hour"`
	SinceStart Counts    `json:"since_start"`
	Start      time.Time `json:"start"`
}

// Traffic returns the daemon-wide counts.
func (t *Tracker) Traffic() Traffic {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	return Traffic{LastMinute: t.minute.since(now, time.Minute), LastHour: t.minute.since(now, time.Hour), SinceStart: t.total, Start: t.start}
}

// QueueStats is what the tracker knows of one queue.
type QueueStats struct {
	DeliveredLastHour int64  `json:"delivered_last_hour"`
	LastError         *Event `json:"last_error,omitempty"`
}

// Queue returns the stats of one queue.
func (t *Tracker) Queue(name string) QueueStats {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.queues[name]
	if q == nil {
		return QueueStats{}
	}
	st := QueueStats{DeliveredLastHour: q.minute.since(now, time.Hour).Delivered}
	if q.lastError != nil {
		e := *q.lastError
		st.LastError = &e
	}
	return st
}

// Events returns the last EventsPerQueue events of a queue, oldest first.
func (t *Tracker) Events(name string) []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.queues[name]
	if q == nil {
		return []Event{}
	}
	n := min(q.n, EventsPerQueue)
	out := make([]Event, 0, n)
	for i := q.n - n; i < q.n; i++ {
		out = append(out, q.events[i%EventsPerQueue])
	}
	return out
}

// QueueNames lists the queues the tracker knows, active or not.
func (t *Tracker) QueueNames() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.queues))
	for n := range t.queues {
		names = append(names, n)
	}
	return names
}

// JobStats is the counts of one job.
type JobStats struct {
	Job string `json:"job"`
	Counts
	LastSeen time.Time `json:"last_seen"`
}

// Jobs returns the counts of every job the tracker remembers.
func (t *Tracker) Jobs() []JobStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]JobStats, 0, len(t.jobs))
	for name, j := range t.jobs {
		out = append(out, JobStats{Job: name, Counts: j.counts, LastSeen: j.last})
	}
	return out
}
