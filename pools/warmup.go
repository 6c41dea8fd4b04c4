package pools

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// warmup is a VMTA's daily cap schedule: daily[0] on the day of start
// (UTC), daily[1] the day after, and no cap once the list has run out.
type warmup struct {
	start   time.Time
	daily   []int
	perSite bool
}

// capFor returns today's cap and whether there is one.
func (w warmup) capFor(now time.Time) (int, bool) {
	if len(w.daily) == 0 {
		return 0, false
	}
	day := int(now.UTC().Truncate(24*time.Hour).Sub(w.start.UTC().Truncate(24*time.Hour)) / (24 * time.Hour))
	if day < 0 {
		day = 0 // before the start: day 1's cap
	}
	if day >= len(w.daily) {
		return 0, false
	}
	return w.daily[day], true
}

// takeQuota counts one message for v (and site, with warmup-per-site)
// today, unless v is at its cap. The count is kept in Counters, so it
// survives restarts.
func (r *Registry) takeQuota(v *VMTA, site string) bool {
	now := r.now()
	limit, capped := v.warmup.capFor(now)
	if !capped {
		return true
	}
	name := "warmup/" + v.Name + "/" + now.UTC().Format(time.DateOnly)
	if v.warmup.perSite {
		name += "/" + site
	}
	n, err := r.counters.AddCounter(name, 1)
	if err != nil {
		r.log.Error("warm-up counter", zap.String("vmta", v.Name), zap.Error(err))
		return false // never over the cap
	}
	if n > int64(limit) {
		r.counters.AddCounter(name, -1)
		return false
	}
	if n == int64(limit) {
		r.log.Info("vmta reached warm-up cap", zap.String("vmta", v.Name), zap.Int("cap", limit), zap.String("counter", name))
	}
	return true
}

// memCounters keeps counts in memory, for a Registry without a spool.
type memCounters struct {
	mu sync.Mutex
	m  map[string]int64
}

func newMemCounters() *memCounters { return &memCounters{m: make(map[string]int64)} }

func (c *memCounters) AddCounter(name string, d int64) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[name] += d
	return c.m[name], nil
}

func (c *memCounters) Counter(name string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[name], nil
}

// LogWarmup logs, for each VMTA in warm-up, its day, today's cap and count.
func (r *Registry) LogWarmup() {
	now := r.now()
	for _, v := range r.vmtas {
		limit, capped := v.warmup.capFor(now)
		if len(v.warmup.daily) == 0 {
			continue
		}
		day := int(now.UTC().Truncate(24*time.Hour).Sub(v.warmup.start.UTC().Truncate(24*time.Hour))/(24*time.Hour)) + 1
		if !capped {
			r.log.Info("vmta warm-up over", zap.String("vmta", v.Name), zap.Int("day", day), zap.Int("days", len(v.warmup.daily)))
			continue
		}
		count, _ := r.counters.Counter("warmup/" + v.Name + "/" + now.UTC().Format(time.DateOnly))
		r.log.Info("vmta warming up", zap.String("vmta", v.Name), zap.Int("day", max(day, 1)), zap.Int("days", len(v.warmup.daily)),
			zap.Int("cap", limit), zap.Int64("today", count), zap.Bool("per_site", v.warmup.perSite))
	}
}
