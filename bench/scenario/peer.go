package scenario

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-mta/sluice/bench/gen"
)

// peer runs the clean load three ways in one run: straight to the sink
// (the ceiling), through sluice, and through a Postfix relay.
func (e *env) peer(ctx context.Context, res *Result) error {
	if err := e.relay(ctx, res); err != nil {
		return err
	}
	bin, ok := postfixAvailable()
	if !ok {
		res.Notes = append(res.Notes, "postfix is not installed: no peer figure")
		return nil
	}
	dir := filepath.Join(e.dir, "postfix")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pf, err := startPostfix(bin, dir, e.p.ip(201), e.sinkIPs[0])
	if err != nil {
		return err
	}
	defer pf.stop()
	ph, err := e.measurePostfix(ctx, pf)
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, ph)
	for _, p := range res.Phases {
		if p.Name == "sluice" {
			res.Ratios["sluice/postfix"] = p.E2ERate / ph.E2ERate
		}
		if p.Name == "ceiling" {
			res.Ratios["postfix/ceiling"] = ph.E2ERate / p.E2ERate
		}
	}
	res.Notes = append(res.Notes, "postfix: queue on disk in a temp dir, relayhost = the first sink address, "+
		"500 processes, 400 connections to the relay host, in_flow_delay = 0; its CPU is master + children (reaped and live)")
	return nil
}

// measurePostfix injects into Postfix and waits until the sink has every
// message.
func (e *env) measurePostfix(ctx context.Context, pf *postfix) (Phase, error) {
	e.sink.Reset()
	master := pf.pid()
	cpu0 := treeCPU(master)
	m := startMeter()
	e.progress("postfix: %d messages into postfix", e.p.Messages)
	r, err := gen.Run(ctx, e.genOptions([]string{pf.listen}, e.p.Messages, "pfx"))
	if err != nil {
		return Phase{}, fmt.Errorf("postfix: %w", err)
	}
	e.progress("postfix: injected at %.0f msg/s; waiting for the sink", r.Rate())
	var done time.Time
	for {
		if e.sink.Messages() >= int64(r.Sent) {
			done = time.Now()
			break
		}
		select {
		case <-ctx.Done():
			return Phase{}, fmt.Errorf("postfix: %d of %d messages at the sink: %w", e.sink.Messages(), r.Sent, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cpu1 := treeCPU(master)
	lat := latencies(r, e.sink.Arrivals())
	ph := Phase{Name: "postfix", Messages: r.Sent, Recipients: r.Rcpts, Seconds: done.Sub(r.Start).Seconds(),
		InjectRate: r.Rate(), E2ERate: float64(r.Sent) / done.Sub(r.Start).Seconds(),
		CPUPer1k: (cpu1 - cpu0).Seconds() / float64(r.Sent) * 1000, Sink: e.sink.Stats().String()}
	ph.P50, ph.P95, ph.P99 = percentiles(lat)
	ph.meter(m)
	e.progress("postfix: end-to-end %.0f msg/s", ph.E2ERate)
	return ph, nil
}
