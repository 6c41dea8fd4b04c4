package throttle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestFailover: while Redis is up a Failover is the Redis backend; the limits
// are whole (ExpectedNodes only matters during an outage).
func TestFailover(t *testing.T) {
	srv := startRedis(t)
	conformance(t, func(t *testing.T) Backend {
		f := NewFailover(NewRedis(newClient(t, srv.addr()), RedisOptions{Prefix: prefixFor(t)}),
			FailoverOptions{ExpectedNodes: 2, ProbeInterval: 200 * time.Millisecond})
		t.Cleanup(func() {
			if f.Degraded() {
				t.Error("degraded with Redis up")
			}
			f.Close()
		})
		return f
	})
}

// TestFailoverDegraded: with Redis unreachable from the start, a single
// node's Failover meets the contract on its local fallback.
func TestFailoverDegraded(t *testing.T) {
	dead := "127.0.0.1:" + strconv.Itoa(freePort(t, false)) // nothing listens here
	conformance(t, perTest(func(t *testing.T) Backend {
		f := NewFailover(NewRedis(newClient(t, dead), RedisOptions{Prefix: prefixFor(t)}),
			FailoverOptions{ExpectedNodes: 1, ProbeInterval: 200 * time.Millisecond})
		wantMode(t, f, "probe", ModeNormal) // fails over on this first call
		if !f.Degraded() {
			t.Fatal("not degraded without Redis")
		}
		return f
	}))
}

func TestFailoverShares(t *testing.T) {
	cases := []struct {
		nodes, limit, wantLimit int
		rate, wantRate          Rate
	}{
		{1, 5, 5, Rate{N: 20, Per: time.Second}, Rate{N: 20, Per: time.Second}},
		{2, 5, 2, Rate{N: 20, Per: time.Second}, Rate{N: 20, Per: 2 * time.Second, Burst: 1}},
		{3, 2, 1, Rate{N: 1, Per: time.Hour, Burst: 6}, Rate{N: 1, Per: 3 * time.Hour, Burst: 2}},
		{4, 0, 0, Rate{}, Rate{}},
	}
	for _, c := range cases {
		f := &Failover{nodes: c.nodes}
		if got := f.connShare(c.limit); got != c.wantLimit {
			t.Errorf("%d nodes: connShare(%d) = %d, want %d", c.nodes, c.limit, got, c.wantLimit)
		}
		if got := f.rateShare(c.rate); got != c.wantRate {
			t.Errorf("%d nodes: rateShare(%v) = %+v, want %+v", c.nodes, c.rate, got, c.wantRate)
		}
	}
}

func TestIsOutage(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("x: %w", ErrInvalid), false},
		{ErrLeaseLost, false},
		{ErrClosed, false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{io.EOF, true},
		{context.DeadlineExceeded, true}, // a client timeout; the caller's own is checked apart
		{redis.ErrClosed, true},
		{redis.ErrPoolTimeout, true},
		{fmt.Errorf("throttle: allow: %w", proto("CLUSTERDOWN The cluster is down")), true},
		{proto("LOADING Redis is loading the dataset in memory"), true},
		{proto("ERR max number of clients reached"), true},
		{proto("ERR wrong number of arguments"), false},
		{proto("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
	}
	for _, c := range cases {
		if got := isOutage(c.err); got != c.want {
			t.Errorf("isOutage(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// proto makes a Redis error reply as go-redis returns it.
func proto(msg string) error {
	c := redis.NewCmd(context.Background())
	c.SetErr(redisErr(msg))
	return c.Err()
}

type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

// TestFailoverOutage kills redis-server in the middle of a run and restarts
// it on the same port: the node keeps going under its local shares, logs the
// change once, and is back on shared limits within 5 s.
func TestFailoverOutage(t *testing.T) {
	srv := startRedis(t)
	core, logs := observer.New(zap.InfoLevel)
	f := NewFailover(NewRedis(newClient(t, srv.addr()), RedisOptions{Prefix: "fo:"}),
		FailoverOptions{ExpectedNodes: 2, Log: zap.New(core), ProbeInterval: 200 * time.Millisecond})
	defer f.Close()
	other := NewRedis(newClient(t, srv.addr()), RedisOptions{Prefix: "fo:"}) // a second node
	defer other.Close()
	ctx := t.Context()
	changes := f.Subscribe(ctx)
	rate := Rate{N: 20, Per: time.Second, Burst: 2} // see testRate; 1 on the local share

	// Shared: the other node holds one of 4 slots, this one the other three.
	acquire(t, other, "conn", 4, time.Minute, true)
	mine := []Lease{acquire(t, f, "conn", 4, time.Minute, true), acquire(t, f, "conn", 4, time.Minute, true),
		acquire(t, f, "conn", 4, time.Minute, true)}
	acquire(t, f, "conn", 4, time.Minute, false)
	must(t, f.SetState(ctx, "q", State{Mode: ModeBackoff, Reason: "[TSS04]"}), "SetState")
	if v, err := f.Counter(ctx, "ctr", 5, 0); err != nil || v != 5 {
		t.Fatalf("Counter = %d, %v", v, err)
	}
	rateWithin(t, "shared 20/s for 2s", 40, func(key string) int64 {
		return countAllowed(t, []Backend{f}, key, rate, rate.Interval(), 2, 2*time.Second)
	})

	srv.kill()
	// Still allowing, at this node's half of the rate: 10/s.
	rateWithin(t, "outage, 20/s over 2 nodes, for 2s", 20, func(key string) int64 {
		return countAllowed(t, []Backend{f}, key, rate, 2*rate.Interval(), 2, 2*time.Second)
	})
	if !f.Degraded() {
		t.Fatal("not degraded with Redis down")
	}
	waitResync(t, changes)
	wantMode(t, f, "q", ModeBackoff) // the state seen before the outage holds
	if v, err := f.Counter(ctx, "ctr", 1, 0); err != nil || v != 6 {
		t.Errorf("Counter during the outage = %d, %v; want 6", v, err)
	}
	// Connections: half of 4. Held leases move to local slots while there
	// is room; the third is lost, so the node comes down to its share.
	must(t, mine[0].Renew(ctx), "Renew during the outage")
	must(t, mine[1].Renew(ctx), "Renew during the outage")
	if err := mine[2].Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Renew of a third lease on a share of 2 = %v, want ErrLeaseLost", err)
	}
	must(t, mine[2].Release(ctx), "Release of a lost lease")
	acquire(t, f, "conn", 4, time.Minute, false)
	must(t, f.SetState(ctx, "q2", State{Mode: ModeSuspended, Reason: "set during outage"}), "SetState")
	if got := nextChange(t, changes, "q2"); got.Mode != ModeSuspended {
		t.Errorf("local subscriber saw %+v during the outage, want suspended", got)
	}
	if n := logs.FilterMessage("redis unreachable, using local limits").Len(); n != 1 {
		t.Errorf("%d outage warnings logged, want 1", n)
	}

	srv.restart() // empty: no persistence
	start := time.Now()
	for f.Degraded() {
		if time.Since(start) > 5*time.Second {
			t.Fatal("still degraded 5s after Redis returned")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("shared limits back %v after Redis returned", time.Since(start).Round(time.Millisecond))
	waitResync(t, changes)
	if n := logs.FilterMessage("redis reachable, shared limits restored").Len(); n != 1 {
		t.Errorf("%d restore messages logged, want 1", n)
	}
	if n := logs.FilterMessage("redis unreachable, using local limits").Len(); n != 1 {
		t.Errorf("%d outage warnings logged, want 1", n)
	}
	// What this node did during the outage was written back.
	wantMode(t, other, "q2", ModeSuspended)
	if v, err := other.Counter(ctx, "ctr", 0, 0); err != nil || v != 1 {
		t.Errorf("counter on Redis after the outage = %d, %v; want 1 (the outage's increment; Redis lost the rest)", v, err)
	}
	// Shared again: the leases move back to Redis, where the other node sees them.
	must(t, mine[0].Renew(ctx), "Renew after the outage")
	must(t, mine[1].Renew(ctx), "Renew after the outage")
	acquire(t, other, "conn", 2, time.Minute, false)
	acquire(t, other, "conn", 3, time.Minute, true)
	if ok, _, err := other.AllowN(ctx, "once", Rate{N: 1, Per: time.Hour}, 1); err != nil || !ok {
		t.Fatalf("other node AllowN: %v, %v", ok, err)
	}
	if ok, _, err := f.AllowN(ctx, "once", Rate{N: 1, Per: time.Hour}, 1); err != nil || ok {
		t.Errorf("AllowN after the outage = %v, %v; want refused by the shared limit", ok, err)
	}
	for _, l := range mine {
		must(t, l.Release(ctx), "Release")
	}
}

// waitResync waits up to 2s for a resync marker.
func waitResync(t *testing.T, ch <-chan Change) {
	t.Helper()
	timeout := time.After(2 * time.Second)
	for {
		select {
		case c := <-ch:
			if c.Resync() {
				return
			}
		case <-timeout:
			t.Fatal("no resync marker within 2s")
		}
	}
}
