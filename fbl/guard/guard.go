// Package guard is the complaint-rate guard: per job and per VMTA it counts
// deliveries and feedback-loop complaints over a sliding window and pauses
// the job (or VMTA) whose complaint rate crosses the limit once it has
// enough volume. The window is a ring of time buckets per name, so memory
// per name is fixed; names idle for a whole window are forgotten. A Guard
// holds no goroutines and is safe for concurrent use; the clock is injected.
package guard

import (
	"sync"
	"time"
)

// Kinds of Trip.
const (
	KindJob  = "job"
	KindVMTA = "vmta"
)

// Trip reports that a job or VMTA has just been paused.
type Trip struct {
	Kind       string  // KindJob or KindVMTA
	Name       string  // the job id or VMTA name
	Rate       float64 // Complaints / Deliveries
	Deliveries int     // in the window when it tripped
	Complaints int
	At         time.Time
}

// Options configure a Guard. Zero values take the defaults.
type Options struct {
	Window    time.Duration // sliding window; default 24 h
	Bucket    time.Duration // bucket width; default Window/120, at least 1 s
	MaxRate   float64       // complaints ÷ deliveries above which to pause; default 0.003
	MinVolume int           // deliveries in the window before the rate counts; default 1000
	MaxNames  int           // names tracked per kind; default 100 000 (see Delivered)
	Now       func() time.Time
	OnTrip    func(Trip) // called for each trip, outside the Guard's lock
}

// Guard is the complaint-rate guard. Create it with New.
type Guard struct {
	o     Options
	width int64 // bucket width in ns
	n     int64 // buckets per window

	mu        sync.Mutex
	counts    map[key]*counter
	names     [2]int // tracked names per kind
	paused    map[key]Trip
	nextSweep int64
	untracked uint64
}

type key struct {
	kind uint8 // 0 job, 1 vmta
	name string
}

var kinds = [2]string{KindJob, KindVMTA}

// counter is one name's ring of buckets and its totals over the window.
type counter struct {
	slots        []slot
	head         int64 // the newest bucket number counted
	deliveries   int64
	complaints   int64
	lastActivity int64 // bucket number
}

type slot struct{ d, c uint32 }

// New returns a Guard.
func New(o Options) *Guard {
	if o.Window <= 0 {
		o.Window = 24 * time.Hour
	}
	if o.Bucket <= 0 {
		o.Bucket = max(o.Window/120, time.Second)
	}
	o.Bucket = min(o.Bucket, o.Window)
	if o.MaxRate <= 0 {
		o.MaxRate = 0.003
	}
	if o.MinVolume <= 0 {
		o.MinVolume = 1000
	}
	if o.MaxNames <= 0 {
		o.MaxNames = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	n := int64((o.Window + o.Bucket - 1) / o.Bucket)
	return &Guard{o: o, width: int64(o.Bucket), n: n, counts: make(map[key]*counter), paused: make(map[key]Trip)}
}

// Delivered counts one delivery for job and for vmta (an empty name is not
// counted) and returns the trips it caused: a rate already above the limit
// trips once the volume reaches MinVolume. Past MaxNames names of a kind,
// new names are not tracked until idle ones are forgotten.
func (g *Guard) Delivered(job, vmta string) []Trip { return g.count(job, vmta, false) }

// Complaint counts one complaint for job and for vmta and returns the trips
// it caused. A name already paused does not trip again.
func (g *Guard) Complaint(job, vmta string) []Trip { return g.count(job, vmta, true) }

func (g *Guard) count(job, vmta string, complaint bool) []Trip {
	now := g.o.Now()
	b := now.UnixNano() / g.width
	var trips []Trip
	g.mu.Lock()
	g.sweep(b)
	for kind, name := range [2]string{job, vmta} {
		if name == "" {
			continue
		}
		k := key{uint8(kind), name}
		c := g.counter(k, b)
		if c == nil {
			continue
		}
		s := &c.slots[c.head%g.n]
		if complaint {
			s.c++
			c.complaints++
		} else {
			s.d++
			c.deliveries++
		}
		if t, ok := g.check(k, c, now); ok {
			trips = append(trips, t)
		}
	}
	g.mu.Unlock()
	if g.o.OnTrip != nil {
		for _, t := range trips {
			g.o.OnTrip(t)
		}
	}
	return trips
}

// counter returns k's counter advanced to bucket b, creating it if allowed.
func (g *Guard) counter(k key, b int64) *counter {
	c := g.counts[k]
	if c == nil {
		if g.names[k.kind] >= g.o.MaxNames {
			g.untracked++
			return nil
		}
		c = &counter{slots: make([]slot, g.n), head: b}
		g.counts[k] = c
		g.names[k.kind]++
	}
	g.advance(c, b)
	c.lastActivity = c.head
	return c
}

// advance moves c's ring to bucket b, emptying the buckets that left the
// window. A clock that steps back counts into the newest bucket.
func (g *Guard) advance(c *counter, b int64) {
	if b <= c.head {
		return
	}
	if b-c.head >= g.n {
		clear(c.slots)
		c.deliveries, c.complaints = 0, 0
	} else {
		for i := c.head + 1; i <= b; i++ {
			s := &c.slots[i%g.n]
			c.deliveries -= int64(s.d)
			c.complaints -= int64(s.c)
			*s = slot{}
		}
	}
	c.head = b
}

// check trips k if its rate is over the limit with enough volume.
func (g *Guard) check(k key, c *counter, now time.Time) (Trip, bool) {
	if c.complaints == 0 || c.deliveries < int64(g.o.MinVolume) {
		return Trip{}, false
	}
	rate := float64(c.complaints) / float64(c.deliveries)
	if rate <= g.o.MaxRate {
		return Trip{}, false
	}
	if _, ok := g.paused[k]; ok {
		return Trip{}, false
	}
	t := Trip{Kind: kinds[k.kind], Name: k.name, Rate: rate, Deliveries: int(c.deliveries), Complaints: int(c.complaints), At: now}
	g.paused[k] = t
	return t, true
}

// sweep forgets, about four times a window, the names with nothing left in
// the window; paused state is kept.
func (g *Guard) sweep(b int64) {
	if b < g.nextSweep {
		return
	}
	g.nextSweep = b + max(1, g.n/4)
	for k, c := range g.counts {
		if b-c.lastActivity >= g.n {
			delete(g.counts, k)
			g.names[k.kind]--
		}
	}
}

// Paused reports whether job is paused.
func (g *Guard) Paused(job string) bool { return g.isPaused(0, job) }

// VMTAPaused reports whether vmta is paused.
func (g *Guard) VMTAPaused(vmta string) bool { return g.isPaused(1, vmta) }

func (g *Guard) isPaused(kind uint8, name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.paused[key{kind, name}]
	return ok
}

// Resume releases job and reports whether it was paused. Its counts start
// afresh, so it is judged again only after MinVolume new deliveries.
func (g *Guard) Resume(job string) bool { return g.resume(0, job) }

// ResumeVMTA releases vmta, as Resume does for a job.
func (g *Guard) ResumeVMTA(vmta string) bool { return g.resume(1, vmta) }

func (g *Guard) resume(kind uint8, name string) bool {
	k := key{kind, name}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.paused[k]
	delete(g.paused, k)
	if c := g.counts[k]; c != nil {
		clear(c.slots)
		c.deliveries, c.complaints = 0, 0
	}
	return ok
}

// Pause pauses a job by hand (or restores a pause after a restart).
func (g *Guard) Pause(t Trip) {
	kind := uint8(0)
	if t.Kind == KindVMTA {
		kind = 1
	}
	g.mu.Lock()
	g.paused[key{kind, t.Name}] = t
	g.mu.Unlock()
}

// PausedList returns every current pause, jobs and VMTAs.
func (g *Guard) PausedList() []Trip {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Trip, 0, len(g.paused))
	for _, t := range g.paused {
		out = append(out, t)
	}
	return out
}

// Rate returns job's complaint rate over the window and the counts behind
// it; the rate is 0 without deliveries.
func (g *Guard) Rate(job string) (rate float64, deliveries, complaints int) {
	return g.rate(0, job)
}

// VMTARate is Rate for a VMTA.
func (g *Guard) VMTARate(vmta string) (rate float64, deliveries, complaints int) {
	return g.rate(1, vmta)
}

func (g *Guard) rate(kind uint8, name string) (float64, int, int) {
	b := g.o.Now().UnixNano() / g.width
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.counts[key{kind, name}]
	if c == nil {
		return 0, 0, 0
	}
	g.advance(c, b)
	if c.deliveries == 0 {
		return 0, 0, int(c.complaints)
	}
	return float64(c.complaints) / float64(c.deliveries), int(c.deliveries), int(c.complaints)
}

// Untracked returns how many counts were not recorded because MaxNames
// was reached.
func (g *Guard) Untracked() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.untracked
}
