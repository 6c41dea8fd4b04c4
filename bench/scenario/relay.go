package scenario

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sluice-mta/sluice/bench/gen"
)

// ceiling runs the generator straight into the sink.
func (e *env) ceiling(ctx context.Context) (Phase, error) {
	e.sink.Reset()
	e.progress("ceiling: %d messages straight to the sink", e.p.Messages)
	m := startMeter()
	r, err := gen.Run(ctx, e.genOptions(e.sinkAddrs(), e.p.Messages, "ceil"))
	if err != nil {
		return Phase{}, fmt.Errorf("ceiling: %w", err)
	}
	ph := Phase{Name: "ceiling", Messages: r.Sent, Recipients: r.Rcpts, Seconds: r.End.Sub(r.Start).Seconds(),
		InjectRate: r.Rate(), E2ERate: r.Rate(), Sink: e.sink.Stats().String()}
	ph.meter(m)
	e.progress("ceiling: %.0f msg/s", ph.E2ERate)
	return ph, nil
}

// measureDaemon injects into the daemon and waits until the accounting
// shows every accepted recipient delivered or bounced.
func (e *env) measureDaemon(ctx context.Context, d *daemon, name, runID string, rate float64) (Phase, error) {
	e.sink.Reset()
	acct := newAcctCounter(d.logDir)
	d0, b0 := acct.poll()
	cpu0, _ := cpuTime(d.pid(), false)
	opts := e.genOptions([]string{d.addr}, e.p.Messages, runID)
	opts.Rate = rate
	profDone := make(chan error, 1)
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	if e.p.PprofDir != "" {
		go func() { // owned here: ends with the profile or pcancel
			profDone <- d.profile(pctx, "profile", fmt.Sprintf("seconds=%d", e.p.PprofSeconds),
				filepath.Join(e.p.PprofDir, name+".cpu.pprof"))
		}()
	} else {
		profDone <- nil
	}
	e.progress("%s: %d messages into sluice", name, e.p.Messages)
	m := startMeter()
	r, err := gen.Run(ctx, opts)
	if err != nil {
		return Phase{}, fmt.Errorf("%s: %w", name, err)
	}
	e.progress("%s: injected at %.0f msg/s; waiting for the accounting", name, r.Rate())
	var done time.Time
	for {
		dn, bn := acct.poll()
		if dn-d0+bn-b0 >= r.Rcpts {
			done = time.Now()
			break
		}
		select {
		case <-ctx.Done():
			return Phase{}, fmt.Errorf("%s: %d of %d recipients done: %w", name, dn-d0+bn-b0, r.Rcpts, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cpu1, _ := cpuTime(d.pid(), false)
	busy, self := m.stop()
	hwm, _ := memKB(d.pid(), "VmHWM")
	arrivals := e.sink.Arrivals()
	lat := latencies(r, arrivals)
	// The accounting is written in batches; when every recipient was
	// delivered, the run ends at the last arrival at the sink.
	end, lag := done, 0.0
	if dn, _ := acct.poll(); dn-d0 >= r.Rcpts {
		if last := lastArrival(r, arrivals); !last.IsZero() && last.Before(done) {
			end, lag = last, float64(done.Sub(last).Microseconds())/1000
		}
	}
	ph := Phase{Name: name, Messages: r.Sent, Recipients: r.Rcpts, Seconds: end.Sub(r.Start).Seconds(),
		InjectRate: r.Rate(), E2ERate: float64(r.Sent) / end.Sub(r.Start).Seconds(), AcctLagMs: lag,
		CPUPer1k: (cpu1 - cpu0).Seconds() / float64(r.Sent) * 1000, PeakRSSMB: float64(hwm) / 1024,
		Sink: e.sink.Stats().String()}
	ph.P50, ph.P95, ph.P99 = percentiles(lat)
	ph.Busy, ph.BenchCPU1k = busy, self.Seconds()/float64(r.Sent)*1000
	if e.p.PprofDir != "" {
		if err := <-profDone; err != nil {
			e.progress("cpu profile: %v (is the run shorter than --pprof-seconds?)", err)
		}
		if err := d.profile(ctx, "heap", "", filepath.Join(e.p.PprofDir, name+".heap.pprof")); err != nil {
			e.progress("heap profile: %v", err)
		}
	}
	e.progress("%s: end-to-end %.0f msg/s, p99 %.1f ms", name, ph.E2ERate, ph.P99)
	return ph, nil
}

// relay is clean, deferrals and large: the ceiling, then through sluice.
func (e *env) relay(ctx context.Context, res *Result) error {
	ceil, err := e.ceiling(ctx)
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, ceil)
	d, err := e.startDaemon("2s")
	if err != nil {
		return err
	}
	defer d.stop(30 * time.Second)
	ph, err := e.measureDaemon(ctx, d, "sluice", "slc", 0)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, d.logTail())
	}
	res.Phases = append(res.Phases, ph)
	if err := e.recheckCeiling(ctx, res); err != nil {
		return err
	}
	res.Ratios["sluice/ceiling"] = ph.E2ERate / res.Phases[0].E2ERate
	if e.p.Scenario == "deferrals" {
		res.Notes = append(res.Notes, "deferred recipients are retried after 2s (retry-after)")
	}
	return nil
}

// latency measures sluice at full speed, then paced at half that rate,
// which is where the p99 target applies.
func (e *env) latency(ctx context.Context, res *Result) error {
	ceil, err := e.ceiling(ctx)
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, ceil)
	d, err := e.startDaemon("2s")
	if err != nil {
		return err
	}
	defer d.stop(30 * time.Second)
	full, err := e.measureDaemon(ctx, d, "sluice", "full", 0)
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, full)
	half, err := e.measureDaemon(ctx, d, "sluice@half", "half", full.E2ERate/2)
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, half)
	if err := e.recheckCeiling(ctx, res); err != nil {
		return err
	}
	res.Ratios["sluice/ceiling"] = full.E2ERate / res.Phases[0].E2ERate
	res.Notes = append(res.Notes, fmt.Sprintf("sluice@half is paced at %.0f msg/s", full.E2ERate/2))
	return nil
}

// meter fills the machine and bench CPU figures from a meter started at
// the beginning of the phase.
func (ph *Phase) meter(m cpuMeter) {
	busy, self := m.stop()
	ph.Busy = busy
	if ph.Messages > 0 {
		ph.BenchCPU1k = self.Seconds() / float64(ph.Messages) * 1000
	}
}

// recheckCeiling measures the ceiling again after the relay runs and keeps
// the better of the two in res.Phases[0]: the ceiling is what the machine
// can do, and a short direct run is easily slowed by other load.
func (e *env) recheckCeiling(ctx context.Context, res *Result) error {
	again, err := e.ceiling(ctx)
	if err != nil {
		return err
	}
	first := res.Phases[0]
	res.Notes = append(res.Notes, fmt.Sprintf("ceiling measured before and after: %.0f and %.0f msg/s; the higher is used",
		first.E2ERate, again.E2ERate))
	if again.E2ERate > first.E2ERate {
		res.Phases[0] = again
	}
	return nil
}

// lastArrival returns the latest sink arrival of the run's messages.
func lastArrival(r *gen.Result, arrivals map[string]time.Time) time.Time {
	var last time.Time
	r.Accepted(func(mid string, _ time.Time) {
		if a, ok := arrivals[mid]; ok && a.After(last) {
			last = a
		}
	})
	return last
}
