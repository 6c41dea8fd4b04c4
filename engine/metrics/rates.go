package metrics

import (
	"sync"
	"time"

	"github.com/sluice-mta/sluice/engine/acct"
)

// Window is how far back Rates remembers.
const Window = 15 * time.Minute

// VMTAStep is the width of a per-VMTA bucket; MaxVMTAs bounds how many
// VMTAs get a series (the rest are counted under OtherSite's name).
const (
	VMTAStep = 10 * time.Second
	MaxVMTAs = 64
)

const (
	nSec  = int(Window / time.Second)
	nVMTA = int(Window / VMTAStep)
)

// counts are one bucket's tallies.
type counts struct {
	ts                                    int64 // bucket start, unix seconds / step
	received, delivered, deferred, bounce uint32
}

// vmtaBucket is one VMTA bucket.
type vmtaBucket struct {
	ts                int64
	delivered, failed uint32 // failed: deferred and bounced
}

// Rates keeps per-second counts of received, delivered, deferred and
// bounced recipients over the last Window, and per-VMTA counts in
// VMTAStep buckets, in fixed rings: memory does not grow with traffic.
type Rates struct {
	now   func() time.Time
	start time.Time

	mu     sync.Mutex
	sec    [nSec]counts
	vmtas  map[string]*[nVMTA]vmtaBucket
	totals Totals
}

// Totals are counts since the process started.
type Totals struct {
	Since     time.Time `json:"since"`
	Received  uint64    `json:"received"`
	Delivered uint64    `json:"delivered"`
	Deferred  uint64    `json:"deferred"`
	Bounced   uint64    `json:"bounced"`
}

// NewRates returns empty rings; now is the clock (nil: time.Now).
func NewRates(now func() time.Time) *Rates {
	if now == nil {
		now = time.Now
	}
	t := now()
	return &Rates{now: now, start: t, vmtas: map[string]*[nVMTA]vmtaBucket{}, totals: Totals{Since: t.UTC()}}
}

// Observe counts r at the current time (not r's timeLogged: records of
// recovered mail would otherwise land in the past).
func (r *Rates) Observe(rec *acct.Record) {
	var kind int
	switch rec.Type {
	case acct.TypeReceived:
		kind = 0
	case acct.TypeDelivered:
		kind = 1
	case acct.TypeTransient, acct.TypeTransientQueue:
		kind = 2
	case acct.TypeBounced, acct.TypeRemoteBounce:
		kind = 3
	default:
		return
	}
	now := r.now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := &r.sec[now%int64(nSec)]
	if b.ts != now {
		*b = counts{ts: now}
	}
	switch kind {
	case 0:
		b.received++
		r.totals.Received++
		return // a reception is not VMTA traffic yet
	case 1:
		b.delivered++
		r.totals.Delivered++
	case 2:
		b.deferred++
		r.totals.Deferred++
	case 3:
		b.bounce++
		r.totals.Bounced++
	}
	name := rec.VMTA
	ring := r.vmtas[name]
	if ring == nil {
		if len(r.vmtas) >= MaxVMTAs {
			name = OtherSite
			ring = r.vmtas[name]
		}
		if ring == nil {
			ring = new([nVMTA]vmtaBucket)
			r.vmtas[name] = ring
		}
	}
	step := now / int64(VMTAStep/time.Second)
	vb := &ring[step%int64(nVMTA)]
	if vb.ts != step {
		*vb = vmtaBucket{ts: step}
	}
	if kind == 1 {
		vb.delivered++
	} else {
		vb.failed++
	}
}

// Series is what the monitor charts: the last Window of complete seconds,
// oldest first, ending at End (exclusive).
type Series struct {
	End       int64                 `json:"end"`  // unix seconds: the points cover [End-len, End)
	Step      int                   `json:"step"` // seconds per point
	Received  []uint32              `json:"received"`
	Delivered []uint32              `json:"delivered"`
	Deferred  []uint32              `json:"deferred"`
	Bounced   []uint32              `json:"bounced"`
	VMTAStep  int                   `json:"vmta_step"`
	VMTAs     map[string]VMTASeries `json:"vmtas"`
	Totals    Totals                `json:"totals"`
	LastMin   Totals                `json:"last_minute"` // sums of the last 60 complete seconds (Since: their start)
}

// VMTASeries is one VMTA's traffic in VMTAStep buckets, oldest first.
type VMTASeries struct {
	Delivered []uint32 `json:"delivered"`
	Failed    []uint32 `json:"failed"` // deferred and bounced
}

// Snapshot returns the series as of now.
func (r *Rates) Snapshot() Series {
	end := r.now().Unix() // the current second is incomplete: left out
	s := Series{End: end, Step: 1, VMTAStep: int(VMTAStep / time.Second),
		Received: make([]uint32, nSec), Delivered: make([]uint32, nSec),
		Deferred: make([]uint32, nSec), Bounced: make([]uint32, nSec), VMTAs: map[string]VMTASeries{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range nSec {
		ts := end - int64(nSec) + int64(i)
		b := r.sec[((ts%int64(nSec))+int64(nSec))%int64(nSec)]
		if b.ts != ts {
			continue
		}
		s.Received[i], s.Delivered[i], s.Deferred[i], s.Bounced[i] = b.received, b.delivered, b.deferred, b.bounce
		if i >= nSec-60 {
			s.LastMin.Received += uint64(b.received)
			s.LastMin.Delivered += uint64(b.delivered)
			s.LastMin.Deferred += uint64(b.deferred)
			s.LastMin.Bounced += uint64(b.bounce)
		}
	}
	s.LastMin.Since = time.Unix(end-60, 0).UTC()
	step := int64(VMTAStep / time.Second)
	last := end / step // the bucket holding now: included, it is the freshest
	for name, ring := range r.vmtas {
		vs := VMTASeries{Delivered: make([]uint32, nVMTA), Failed: make([]uint32, nVMTA)}
		for i := range nVMTA {
			ts := last - int64(nVMTA) + 1 + int64(i)
			b := ring[((ts%int64(nVMTA))+int64(nVMTA))%int64(nVMTA)]
			if b.ts == ts {
				vs.Delivered[i], vs.Failed[i] = b.delivered, b.failed
			}
		}
		s.VMTAs[name] = vs
	}
	s.Totals = r.totals
	return s
}
