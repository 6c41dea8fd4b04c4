package scenario

import (
	"context"
	"testing"
	"time"
)

// Addresses of the reliability tests: 127.31.1.0/24 (crash) and
// 127.31.2.0/24 (redis-fault).

// TestCrashShort is the CI version of the crash scenario: 10,000 messages
// and two kill -9 (the full run is `go run ./bench crash`: 100,000 and
// five). No message that got a 250 may be lost. Duplicates are the
// messages the sink accepted but the daemon had not yet marked delivered
// when it was killed: about one per delivery connection in flight, so the
// 0.1% target applies to the full run; here each kill may cost up to 40.
func TestCrashShort(t *testing.T) {
	p := params(t, "crash", 1)
	p.Messages, p.Kills, p.Sessions, p.PerSession = 10000, 2, 8, 100
	p.Timeout = 3 * time.Minute
	t0 := time.Now()
	res, err := Run(context.Background(), p)
	if res == nil || res.Crash == nil {
		t.Fatalf("no result: %v", err)
	}
	c := res.Crash
	t.Logf("%d acknowledged, %d delivered, %d lost, %d duplicates (%.3f%%), kills at %v s, down %v s, in %v",
		c.Acked, c.Delivered, c.Lost, c.Duplicates, c.DupPct, c.KillsAt, c.DownS, time.Since(t0).Round(time.Second))
	if c.Lost != 0 {
		t.Fatalf("%d acknowledged messages lost (%v)", c.Lost, err)
	}
	if len(c.KillsAt) != 2 {
		t.Errorf("%d kills, want 2", len(c.KillsAt))
	}
	if c.Acked < p.Messages*9/10 {
		t.Errorf("only %d of %d messages acknowledged", c.Acked, p.Messages)
	}
	if c.Duplicates > int64(40*p.Kills) {
		t.Errorf("%d duplicates, more than 40 per kill", c.Duplicates)
	}
}
