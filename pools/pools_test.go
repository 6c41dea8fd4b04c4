package pools

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/config"
)

func testConfig(warm ...int) *config.Config {
	c := &config.Config{Hostname: "mta.test"}
	for i, name := range []string{"v1", "v2", "v3", "v4"} {
		v := config.VirtualMTA{Name: name, SMTPSourceHost: "127.0.0." + string(rune('2'+i)) + " " + name + ".test"}
		if name == "v1" && len(warm) > 0 {
			v.WarmupStart = config.Date{Time: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)}
			v.WarmupDaily = warm
		}
		c.VirtualMTAs = append(c.VirtualMTAs, v)
	}
	c.Pools = []config.VirtualMTAPool{{Name: "pool-a", VirtualMTAs: []string{"v1:1", "v2:1", "v3:2", "v4:4"}}}
	return c
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func shares(t *testing.T, r *Registry, n int, site string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		v, pool, err := r.Pick("pool-a", site)
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		if pool != "pool-a" {
			t.Fatalf("pool %q", pool)
		}
		got[v.Name]++
	}
	return got
}

func TestWeightedShares(t *testing.T) {
	r := New(testConfig(), Options{})
	got := shares(t, r, 10000, "gmail.test")
	want := map[string]float64{"v1": 0.125, "v2": 0.125, "v3": 0.25, "v4": 0.5}
	for name, w := range want {
		if share := float64(got[name]) / 10000; math.Abs(share-w) > 0.02 {
			t.Errorf("%s: share %.3f, want %.3f ± 0.02", name, share, w)
		}
	}
	// Smooth: the heaviest member never runs more than twice in a row
	// with weights 1:1:2:4 (v4 alternates with the others).
	var seq []string
	for i := 0; i < 16; i++ {
		v, _, _ := r.Pick("pool-a", "x.test")
		seq = append(seq, v.Name)
	}
	if s := strings.Join(seq, " "); strings.Contains(s, "v4 v4 v4") {
		t.Errorf("rotation bursts: %s", s)
	}
}

func TestDisabledIsSkippedPerSite(t *testing.T) {
	c := &clock{time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)}
	r := New(testConfig(), Options{Now: c.now})
	r.Disable(r.Get("v4"), "hotmail.test", c.t.Add(time.Hour), "S3150")
	got := shares(t, r, 4000, "hotmail.test")
	if got["v4"] != 0 {
		t.Errorf("disabled v4 picked %d times", got["v4"])
	}
	// Its share goes to the others, in their proportions 1:1:2.
	if s := float64(got["v3"]) / 4000; math.Abs(s-0.5) > 0.02 {
		t.Errorf("v3 share %.3f, want 0.5", s)
	}
	if got := shares(t, r, 800, "gmail.test"); got["v4"] == 0 {
		t.Error("v4 skipped for another site")
	}
	if r.Available(r.Get("v4"), "hotmail.test") {
		t.Error("v4 available while disabled")
	}
	c.t = c.t.Add(time.Hour)
	if !r.Available(r.Get("v4"), "hotmail.test") {
		t.Error("v4 not re-enabled after reenable-after")
	}
	if got := shares(t, r, 800, "hotmail.test"); got["v4"] == 0 {
		t.Error("v4 not back in rotation")
	}
}

func TestWarmupCap(t *testing.T) {
	c := &clock{time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)} // day 2 of v1's warm-up
	counters := newMemCounters()
	r := New(testConfig(5, 10), Options{Now: c.now, Counters: counters})
	got := shares(t, r, 2000, "a.test")
	if got["v1"] != 10 {
		t.Errorf("v1 sent %d on day 2, want its cap 10", got["v1"])
	}
	// A new registry on the same counters (a restart) still holds the count.
	r = New(testConfig(5, 10), Options{Now: c.now, Counters: counters})
	if got := shares(t, r, 100, "a.test"); got["v1"] != 0 {
		t.Errorf("after restart v1 sent %d more", got["v1"])
	}
	// Named directly, a VMTA at its cap makes mail wait.
	if _, _, err := r.Pick("v1", "a.test"); !errors.Is(err, ErrNoRoom) {
		t.Errorf("Pick(v1) at cap: %v, want ErrNoRoom", err)
	}
	// Day 3: past the list, no cap.
	c.t = c.t.Add(24 * time.Hour)
	if got := shares(t, r, 1000, "a.test"); got["v1"] < 100 {
		t.Errorf("v1 sent %d after warm-up ended", got["v1"])
	}
}

func TestSelection(t *testing.T) {
	cfg := testConfig()
	cfg.Delivery.SourceIP = "127.0.0.9"
	r := New(cfg, Options{})
	if v, pool, err := r.Pick("", "a.test"); err != nil || v.Name != "default" || pool != "" || v.SourceIP.String() != "127.0.0.9" || v.Hostname != "mta.test" {
		t.Errorf("nothing requested: %v %q %v, want the built-in default", v, pool, err)
	}
	if v, pool, err := r.Pick("v3", "a.test"); err != nil || v.Name != "v3" || pool != "" || v.Hostname != "v3.test" {
		t.Errorf("v3: %v %q %v", v, pool, err)
	}
	if _, _, err := r.Pick("nope", "a.test"); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown: %v", err)
	}
	if !r.Known("pool-a") || !r.Known("v2") || !r.Known("") || r.Known("nope") {
		t.Error("Known")
	}
	cfg.Pools = append(cfg.Pools, config.VirtualMTAPool{Name: "default", VirtualMTAs: []string{"v2"}})
	r = New(cfg, Options{})
	if v, pool, _ := r.Pick("", "a.test"); v.Name != "v2" || pool != "default" {
		t.Errorf("with a default pool: %v %q", v, pool)
	}
}

func TestCheckReverseDNS(t *testing.T) {
	r := New(testConfig(), Options{})
	ptr := map[string][]string{"127.0.0.2": {"v1.test."}, "127.0.0.3": {"other.test"}}
	bad := r.CheckReverseDNS(context.Background(), func(_ context.Context, ip netip.Addr) ([]string, error) {
		return ptr[ip.String()], nil
	})
	slices.Sort(bad)
	if !slices.Equal(bad, []string{"v2", "v3", "v4"}) {
		t.Errorf("FCrDNS failures %v, want v2 v3 v4", bad)
	}
}
