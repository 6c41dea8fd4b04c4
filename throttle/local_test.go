package throttle

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLocal(t *testing.T) {
	conformance(t, perTest(func(t *testing.T) Backend { return NewLocal() }))
}

// fakeClock is a clock tests advance by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestGCRAStep(t *testing.T) {
	const T = 100 // interval
	cases := []struct {
		name          string
		tat, now, tol int64
		n             int
		wantTAT       int64
		wantOK        bool
		wantWait      int64
	}{
		{"fresh key", 0, 1000, 0, 1, 1100, true, 0},
		{"idle: TAT in the past", 500, 1000, 0, 1, 1100, true, 0},
		{"caught up exactly", 1000, 1000, 0, 1, 1100, true, 0},
		{"ahead by one interval", 1100, 1000, 0, 1, 1100, false, 100},
		{"batch charged in full", 1000, 1000, 0, 5, 1500, true, 0},
		{"within burst tolerance", 1200, 1000, 200, 1, 1300, true, 0},
		{"past burst tolerance", 1300, 1000, 200, 1, 1300, false, 100},
	}
	for _, c := range cases {
		tat, ok, wait := gcraStep(c.tat, c.now, T, c.tol, c.n)
		if ok != c.wantOK || wait != c.wantWait || (ok && tat != c.wantTAT) {
			t.Errorf("%s: gcraStep = (%d, %v, %d), want (%d, %v, %d)", c.name, tat, ok, wait, c.wantTAT, c.wantOK, c.wantWait)
		}
	}
}

func TestLocalRateClock(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(WithClock(clk.Now))
	defer l.Close()
	ctx := t.Context()
	rate := Rate{N: 10, Per: time.Second} // one per 100ms
	allow := func(n int, wantOK bool, wantWait time.Duration) {
		t.Helper()
		ok, wait, err := l.AllowN(ctx, "k", rate, n)
		must(t, err, "AllowN")
		if ok != wantOK || wait != wantWait {
			t.Fatalf("AllowN(%d) at +%v = %v, %v; want %v, %v", n, clk.Now().Sub(time.Unix(1_800_000_000, 0)), ok, wait, wantOK, wantWait)
		}
	}
	allow(1, true, 0)
	allow(1, false, 100*time.Millisecond)
	clk.Advance(60 * time.Millisecond)
	allow(1, false, 40*time.Millisecond)
	clk.Advance(40 * time.Millisecond)
	allow(3, true, 0) // a batch, then 300ms of debt
	clk.Advance(100 * time.Millisecond)
	allow(1, false, 200*time.Millisecond)
	clk.Advance(10 * time.Second) // idle time is not banked beyond the burst
	allow(1, true, 0)
	allow(1, false, 100*time.Millisecond)
}

func TestLocalExpiryClock(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(WithClock(clk.Now))
	defer l.Close()
	ctx := t.Context()

	a := acquire(t, l, "c", 1, time.Second, true)
	acquire(t, l, "c", 1, time.Second, false)
	clk.Advance(900 * time.Millisecond)
	must(t, a.Renew(ctx), "Renew")
	clk.Advance(900 * time.Millisecond) // 1.8s after the acquire, 0.9s after the renew
	acquire(t, l, "c", 1, time.Second, false)
	clk.Advance(100 * time.Millisecond)
	acquire(t, l, "c", 1, time.Second, true)
	if err := a.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Renew after expiry = %v", err)
	}

	must(t, l.SetState(ctx, "s", State{Mode: ModeBackoff, Until: clk.Now().Add(time.Minute)}), "SetState")
	wantMode(t, l, "s", ModeBackoff)
	clk.Advance(time.Minute)
	wantMode(t, l, "s", ModeNormal)

	for i, want := range []int64{1, 2} {
		v, _ := l.Counter(ctx, "n", 1, time.Hour)
		if v != want {
			t.Errorf("Counter #%d = %d, want %d", i, v, want)
		}
	}
	clk.Advance(time.Hour)
	if v, _ := l.Counter(ctx, "n", 1, time.Hour); v != 1 {
		t.Errorf("Counter after its window = %d, want 1", v)
	}
}

// TestLocalSweep: entries that expired are dropped as the maps grow.
func TestLocalSweep(t *testing.T) {
	clk := newFakeClock()
	l := NewLocal(WithClock(clk.Now))
	defer l.Close()
	ctx := t.Context()
	rate := Rate{N: 1, Per: time.Second}
	for i := range 5000 {
		key := "k" + string(rune('a'+i%26)) + string(rune(i))
		l.AllowN(ctx, key, rate, 1)
		l.AcquireConn(ctx, key, 1, time.Second)
		l.Counter(ctx, key, 1, time.Second)
		l.SetState(ctx, key, State{Mode: ModeBackoff, Until: clk.Now().Add(time.Second)})
	}
	clk.Advance(2 * time.Second)
	for range 20000 {
		if _, err := l.Counter(ctx, "live", 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	n := len(l.tats) + len(l.sems) + len(l.counters) + len(l.states)
	l.mu.Unlock()
	if n > 1 {
		t.Errorf("%d entries left after everything expired, want 1", n)
	}
}

func TestLocalClose(t *testing.T) {
	l := NewLocal()
	ctx := t.Context()
	ch := l.Subscribe(ctx)
	lease := acquire(t, l, "c", 1, time.Minute, true)
	must(t, l.Close(), "Close")
	must(t, l.Close(), "second Close")
	if _, ok := <-ch; ok {
		t.Error("subscription open after Close")
	}
	if _, ok := <-l.Subscribe(ctx); ok {
		t.Error("Subscribe after Close delivered")
	}
	if _, _, err := l.AllowN(ctx, "k", Rate{N: 1, Per: time.Second}, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("AllowN after Close: %v", err)
	}
	if _, _, err := l.AcquireConn(ctx, "k", 1, time.Minute); !errors.Is(err, ErrClosed) {
		t.Errorf("AcquireConn after Close: %v", err)
	}
	if err := lease.Renew(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Renew after Close: %v", err)
	}
	must(t, lease.Release(ctx), "Release after Close")
}

// TestMailbox: a slow reader gets the latest state of each key, in the
// order keys first changed, and a resync marker once too far behind.
func TestMailbox(t *testing.T) {
	m := newMailbox()
	m.put(Change{Key: "a", State: State{Mode: ModeBackoff}})
	m.put(Change{Key: "b", State: State{Mode: ModeSuspended}})
	m.put(Change{Key: "a", State: State{Mode: ModeNormal}})
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan Change)
	done := make(chan struct{})
	go func() {
		m.pump(ctx, out)
		close(done)
	}()
	for _, want := range []Change{{Key: "a", State: State{Mode: ModeNormal}}, {Key: "b", State: State{Mode: ModeSuspended}}} {
		if got := <-out; got != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
	for i := range maxPending + 1 {
		m.put(Change{Key: string(rune(i + 1)), State: State{Mode: ModeBackoff}})
	}
	if got := <-out; !got.Resync() {
		t.Errorf("after overflow got %+v, want a resync marker", got)
	}
	cancel()
	<-done
	if _, ok := <-out; ok {
		t.Error("out not closed")
	}
}
