package scenario

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/sluice-mta/sluice/bench/gen"
)

// Crash holds the figures of the crash scenario.
type Crash struct {
	Kills      int       `json:"kills"`
	Acked      int       `json:"acked"`      // messages that got a 250
	Delivered  int       `json:"delivered"`  // of those, at the sink
	Lost       int       `json:"lost"`       // acked, never delivered: must be 0
	Duplicates int64     `json:"duplicates"` // extra copies at the sink
	DupPct     float64   `json:"dup_pct"`    // Duplicates / Acked × 100: must be ≤ 0.1
	KillsAt    []float64 `json:"kills_at_s"` // seconds from the start of injection
	DownS      []float64 `json:"down_s"`     // kill to listener accepting again
	DrainS     float64   `json:"drain_s"`    // end of injection to the last acked message delivered
}

// crash injects p.Messages messages in p.Kills+1 runs of the generator and
// kills the daemon with SIGKILL once during each run after the first, at a
// random moment, restarting it at once on the same spool. It then waits
// until every message that got a 250 is at the sink (matched by
// Message-ID), and fails if one is lost or more than 0.1% are duplicated
// (RFC 5321 §6.1: a 250 means the message is ours to deliver).
func (e *env) crash(ctx context.Context, res *Result) error {
	kills := e.p.Kills
	d, err := e.startDaemon("1s")
	if err != nil {
		return err
	}
	defer func() { d.stop(30 * time.Second) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0xc4a5))
	cr := &Crash{Kills: kills}
	res.Crash = cr
	var acked []string
	chunks := kills + 1
	per := e.p.Messages / chunks
	rate := 0.0
	start := time.Now()
	cpu0, _ := cpuTime(d.pid(), false)
	m := startMeter()
	for c := range chunks {
		n := per
		if c == chunks-1 {
			n = e.p.Messages - per*(chunks-1)
		}
		type killed struct {
			at, down time.Duration
			err      error
		}
		kc := make(chan killed, 1)
		if c > 0 {
			expect := time.Duration(float64(n) / max(rate, 1) * float64(time.Second))
			wait := time.Duration((0.1 + 0.8*rng.Float64()) * float64(expect))
			go func() { // owned here: the loop waits for kc below
				select {
				case <-ctx.Done():
					kc <- killed{err: ctx.Err()}
					return
				case <-time.After(wait):
				}
				t0 := time.Now()
				d.kill() // SIGKILL
				err := d.start(2 * time.Minute)
				kc <- killed{at: t0.Sub(start), down: time.Since(t0), err: err}
			}()
		}
		e.progress("crash: run %d of %d, %d messages%s", c+1, chunks, n, map[bool]string{true: ", one kill -9 in it"}[c > 0])
		opts := e.genOptions([]string{d.addr}, n, fmt.Sprintf("crash%d-%x", c, rng.Uint32()))
		r, gerr := gen.Run(ctx, opts)
		if c > 0 {
			k := <-kc
			if k.err != nil {
				return fmt.Errorf("crash: restart after kill %d: %w", c, k.err)
			}
			cr.KillsAt = append(cr.KillsAt, k.at.Seconds())
			cr.DownS = append(cr.DownS, k.down.Seconds())
			e.progress("crash: killed at %.1fs, listening again after %.2fs", k.at.Seconds(), k.down.Seconds())
		}
		if r == nil {
			return fmt.Errorf("crash: run %d: %w", c+1, gerr)
		}
		if gerr != nil {
			e.progress("crash: run %d: %v (%d of %d acknowledged)", c+1, gerr, r.Sent, n)
		}
		if c == 0 {
			rate = r.Rate()
		}
		r.Accepted(func(mid string, _ time.Time) { acked = append(acked, mid) })
	}
	injected := time.Now()
	cr.Acked = len(acked)
	e.progress("crash: %d messages acknowledged; waiting for them at the sink", len(acked))

	// Wait until every acknowledged message arrived, or nothing has
	// arrived for a minute (retries run every second).
	lastProgress, lastMissing := time.Now(), -1
	var missing int
	for {
		arr := e.sink.Arrivals()
		missing = 0
		for _, id := range acked {
			if _, ok := arr[id]; !ok {
				missing++
			}
		}
		if missing != lastMissing {
			lastMissing, lastProgress = missing, time.Now()
		}
		if missing == 0 || time.Since(lastProgress) > time.Minute || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cr.DrainS = time.Since(injected).Seconds()
	cr.Lost = missing
	cr.Delivered = len(acked) - missing
	cr.Duplicates = e.sink.Duplicates()
	if len(acked) > 0 {
		cr.DupPct = float64(cr.Duplicates) / float64(len(acked)) * 100
	}
	cpu1, _ := cpuTime(d.pid(), false)
	busy, self := m.stop()
	hwm, _ := memKB(d.pid(), "VmHWM")
	el := time.Since(start).Seconds()
	ph := Phase{Name: fmt.Sprintf("sluice (%d × kill -9)", kills), Messages: len(acked), Recipients: len(acked),
		Seconds: el, InjectRate: float64(len(acked)) / injected.Sub(start).Seconds(), E2ERate: float64(cr.Delivered) / el,
		CPUPer1k: (cpu1 - cpu0).Seconds() / float64(max(len(acked), 1)) * 1000, PeakRSSMB: float64(hwm) / 1024,
		Busy: busy, BenchCPU1k: self.Seconds() / float64(max(len(acked), 1)) * 1000, Sink: e.sink.Stats().String()}
	res.Phases = append(res.Phases, ph)
	res.Ratios["lost"] = float64(cr.Lost)
	res.Ratios["duplicate %"] = cr.DupPct
	res.Notes = append(res.Notes,
		fmt.Sprintf("%d messages injected in %d runs; kill -9 at %s s; listener back after %s s (CPU and RSS: since the last restart)",
			e.p.Messages, chunks, floats(cr.KillsAt), floats(cr.DownS)),
		fmt.Sprintf("%d acknowledged, %d delivered, %d lost, %d duplicate copies (%.3f%%)",
			cr.Acked, cr.Delivered, cr.Lost, cr.Duplicates, cr.DupPct))
	switch {
	case cr.Lost > 0:
		return fmt.Errorf("crash: %d of %d acknowledged messages lost", cr.Lost, cr.Acked)
	case cr.DupPct > 0.1:
		return fmt.Errorf("crash: %d duplicates (%.3f%%), more than 0.1%%", cr.Duplicates, cr.DupPct)
	}
	return nil
}

func floats(v []float64) string {
	s := ""
	for i, f := range v {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.1f", f)
	}
	return s
}

// writeSpoolKey writes a new random AES-256 key, hex, mode 0600, unless
// path exists.
func writeSpoolKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	k := make([]byte, 32)
	if _, err := crand.Read(k); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600)
}
