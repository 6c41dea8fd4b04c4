package scenario

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// throttledRate is the message rate per queue (site and VMTA, as PowerMTA
// applies it) of the throttled scenario.
const throttledRate = 250

// throttled runs the clean load with per-ISP limits active: every bench
// domain's MX ends in bench.test, so one [mx-rollup] makes them one site
// capped at throttledRate messages per second and 10 connections per VMTA.
// It reports how close the delivered rate comes to the site's total cap.
func (e *env) throttled(ctx context.Context, res *Result) error {
	e.extra = fmt.Sprintf("\n[mx-rollup.benchisp]\nmx-suffix = [\"bench.test\"]\nmax-smtp-out = 10\nmax-msg-rate = \"%d/s\"\n", throttledRate)
	d, err := e.startDaemon("2s")
	if err != nil {
		return err
	}
	defer d.stop(30 * time.Second)
	limit := float64(throttledRate * max(e.p.VMTAs, 1))
	ph, err := e.measureDaemon(ctx, d, fmt.Sprintf("sluice (%.0f/s cap)", limit), "thr", 0)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, d.logTail())
	}
	res.Phases = append(res.Phases, ph)
	res.Ratios["e2e/cap"] = ph.E2ERate / limit
	res.Notes = append(res.Notes, fmt.Sprintf("one rolled-up site (mx-suffix bench.test), max-msg-rate = %d/s per queue, %d VMTAs", throttledRate, e.p.VMTAs))
	return nil
}

// redisRelay runs the clean load embedded, then with its limits kept in a
// local redis-server, and reports the ratio (the issue asks ≥ 0.9).
func (e *env) redisRelay(ctx context.Context, res *Result) error {
	ceil, err := e.ceiling(ctx)
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, ceil)
	d, err := e.startDaemon("2s")
	if err != nil {
		return err
	}
	emb, err := e.measureDaemon(ctx, d, "sluice (embedded)", "emb", 0)
	d.stop(30 * time.Second)
	if err != nil {
		return err
	}
	res.Phases = append(res.Phases, emb)

	addr, stop, err := startRedis(e.dir)
	if err != nil {
		return err
	}
	defer stop()
	e.extra = fmt.Sprintf("\n[redis]\nurl = \"redis://%s/0\"\n", addr)
	d, err = e.startDaemon("2s")
	if err != nil {
		return err
	}
	defer d.stop(30 * time.Second)
	red, err := e.measureDaemon(ctx, d, "sluice (redis)", "red", 0)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, d.logTail())
	}
	res.Phases = append(res.Phases, red)
	res.Ratios["redis/embedded"] = red.E2ERate / emb.E2ERate
	res.Ratios["sluice/ceiling"] = emb.E2ERate / ceil.E2ERate
	return nil
}

// startRedis runs a private redis-server on a free loopback port.
func startRedis(dir string) (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("redis-server (apt-get install redis-server): %w", err)
	}
	addr = "127.0.0.1:" + strconv.Itoa(port)
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("redis-server did not start on %s", addr)
}
