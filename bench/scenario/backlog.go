package scenario

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sluice-mta/sluice/bench/gen"
)

// backlog queues p.Recipients recipients with the sink closed, measures the
// daemon's memory per queued recipient, restarts it with the sink open and
// measures the time until delivery resumes, then drains. "Closed" is a sink
// that accepts TCP but holds back its greeting: the daemon's connections
// wait (command timeout 10m) and mail stays queued without retry churn; a
// refusing sink would make every queued recipient be retried and rewritten
// every retry interval.
func (e *env) backlog(ctx context.Context, res *Result) error {
	per := e.p.RcptsPerMsg
	msgs := (e.p.Recipients + per - 1) / per
	d, err := e.startDaemonTimeout("2s", "10m")
	if err != nil {
		return err
	}
	defer func() { d.stop(2 * time.Minute) }()
	time.Sleep(500 * time.Millisecond)
	base, _ := memKB(d.pid(), "VmRSS")
	b := &Backlog{Messages: msgs, RSSBaseMB: float64(base) / 1024}
	res.Backlog = b

	e.progress("backlog: queueing %d recipients in %d messages, sink closed", msgs*per, msgs)
	opts := e.genOptions([]string{d.addr}, msgs, "bl")
	r, err := gen.Run(ctx, opts)
	if err != nil {
		return fmt.Errorf("backlog inject: %w", err)
	}
	b.Recipients = r.Rcpts
	b.InjectSeconds = r.End.Sub(r.Start).Seconds()
	e.progress("backlog: %d recipients queued in %.1f s (%.0f msg/s)", r.Rcpts, b.InjectSeconds, r.Rate())
	time.Sleep(3 * time.Second) // let the first refused attempts settle
	queued, _ := memKB(d.pid(), "VmRSS")
	hwm, _ := memKB(d.pid(), "VmHWM")
	b.RSSQueuedMB = float64(queued) / 1024
	b.PeakRSSMB = float64(hwm) / 1024
	b.BytesPerRcpt = float64(queued-base) * 1024 / float64(r.Rcpts)
	if e.p.PprofDir != "" {
		if err := d.profile(ctx, "heap", "", filepath.Join(e.p.PprofDir, "backlog.heap.pprof")); err != nil {
			e.progress("heap profile: %v", err)
		}
	}

	e.progress("backlog: restarting the daemon with the sink open")
	t0 := time.Now()
	if err := d.stop(2 * time.Minute); err != nil {
		return fmt.Errorf("backlog stop: %w", err)
	}
	b.StopSeconds = time.Since(t0).Seconds()
	e.sink.SetHold(false)
	acct := newAcctCounter(d.logDir)
	d0, b0 := acct.poll()
	if err := d.start(5 * time.Minute); err != nil {
		return fmt.Errorf("backlog restart: %w", err)
	}
	restarted := d.started
	b.RestartReadyS = time.Since(restarted).Seconds()
	for e.sink.Messages() == 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("backlog: no delivery after restart: %w", ctx.Err())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if first, ok := e.sink.FirstArrivalAfter(restarted); ok {
		b.RestartResumeS = first.Sub(restarted).Seconds()
	}
	e.progress("backlog: ready after %.2f s, first delivery after %.2f s; draining", b.RestartReadyS, b.RestartResumeS)
	for {
		dn, bn := acct.poll()
		if dn-d0+bn-b0 >= r.Rcpts {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("backlog drain: %d of %d recipients done: %w", dn-d0+bn-b0, r.Rcpts, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	b.DrainSeconds = time.Since(restarted).Seconds()
	b.DrainRcptRate = float64(r.Rcpts) / b.DrainSeconds
	if hwm, err := memKB(d.pid(), "VmHWM"); err == nil {
		b.PeakRSSMB = max(b.PeakRSSMB, float64(hwm)/1024)
	}
	res.Notes = append(res.Notes, "RSS per queued recipient = (VmRSS with the backlog queued − VmRSS before injection) / recipients",
		"the sink was closed by holding back its greeting; restart times run from the exec of the new daemon")
	return nil
}
