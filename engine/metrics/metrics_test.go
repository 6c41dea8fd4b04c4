package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/throttle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scrape returns the text exposition of m.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Result().Body)
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, b)
	}
	return string(b)
}

func wantLine(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains("\n"+text, "\n"+l+"\n") {
			t.Errorf("no line %q in the scrape", l)
		}
	}
}

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func TestCountersFromRecords(t *testing.T) {
	m := New(Options{})
	m.Observe(&acct.Record{Type: "r", VMTA: "pool1", Queue: "d1.test/pool1", Rcpt: "a@d1.test"})
	m.Observe(&acct.Record{Type: "d", VMTA: "v1", Queue: "d1.test/v1", TimeQueued: t0, TimeLogged: t0.Add(2 * time.Second)})
	m.Observe(&acct.Record{Type: "d", VMTA: "v1", Queue: "d1.test/v1", TimeQueued: t0, TimeLogged: t0.Add(40 * time.Millisecond)})
	m.Observe(&acct.Record{Type: "t", VMTA: "v2", Queue: "google/v2", BounceCat: "policy-related"})
	m.Observe(&acct.Record{Type: "b", VMTA: "v2", Queue: "google/v2", BounceCat: "bad-mailbox"})
	m.Observe(&acct.Record{Type: "b", VMTA: "v2", Queue: "google/v2", BounceCat: "bad-mailbox"})
	m.Observe(&acct.Record{Type: "f", FeedbackType: "abuse"})
	m.ThrottleWait("rate")
	text := scrape(t, m)
	wantLine(t, text,
		`sluice_messages_received_total{site="d1.test",vmta="pool1"} 1`,
		`sluice_messages_delivered_total{site="d1.test",vmta="v1"} 2`,
		`sluice_messages_deferred_total{category="policy-related",site="google",vmta="v2"} 1`,
		`sluice_messages_bounced_total{category="bad-mailbox",site="google",vmta="v2"} 2`,
		`sluice_feedback_reports_total{type="abuse"} 1`,
		`sluice_delivery_latency_seconds_count 2`,
		`sluice_delivery_latency_seconds_bucket{le="0.05"} 1`,
		`sluice_delivery_latency_seconds_bucket{le="2.5"} 2`,
		`sluice_throttle_waits_total{kind="rate"} 1`,
	)
	if !strings.Contains(text, "go_goroutines ") || !strings.Contains(text, "process_") {
		t.Error("runtime collectors missing")
	}
}

func TestSiteLabelIsBounded(t *testing.T) {
	m := New(Options{MaxSites: 2})
	for _, site := range []string{"a.test", "b.test", "c.test", "d.test", "a.test"} {
		m.Observe(&acct.Record{Type: "d", VMTA: "v", Queue: site + "/v"})
	}
	wantLine(t, scrape(t, m),
		`sluice_messages_delivered_total{site="a.test",vmta="v"} 2`,
		`sluice_messages_delivered_total{site="b.test",vmta="v"} 1`,
		`sluice_messages_delivered_total{site="_other",vmta="v"} 2`,
	)
}

func TestGauges(t *testing.T) {
	m := New(Options{})
	depth := map[string]float64{"google": 12, "d1.test": 3}
	m.Gauge("sluice_connections_in", "sessions", func() float64 { return 4 })
	m.GaugeVec("sluice_queue_depth", "queued", "site", func() map[string]float64 { return depth })
	wantLine(t, scrape(t, m),
		`sluice_connections_in 4`,
		`sluice_queue_depth{site="google"} 12`,
		`sluice_queue_depth{site="d1.test"} 3`,
	)
}

func TestWrapThrottleCountsRefusals(t *testing.T) {
	m := New(Options{})
	b := m.WrapThrottle(throttle.NewLocal())
	defer b.Close()
	ctx := context.Background()
	l, ok, err := b.AcquireConn(ctx, "q", 1, time.Minute)
	if !ok || err != nil {
		t.Fatalf("first slot: %v %v", ok, err)
	}
	if _, ok, _ := b.AcquireConn(ctx, "q", 1, time.Minute); ok {
		t.Fatal("second slot granted over the limit")
	}
	l.Release(ctx)
	r := throttle.Rate{N: 1, Per: time.Hour}
	b.AllowN(ctx, "r", r, 1)
	if ok, _, _ := b.AllowN(ctx, "r", r, 1); ok {
		t.Fatal("rate not enforced")
	}
	wantLine(t, scrape(t, m),
		`sluice_throttle_waits_total{kind="connection"} 1`,
		`sluice_throttle_waits_total{kind="rate"} 1`,
	)
}

func TestRates(t *testing.T) {
	clk := &fakeClock{}
	clk.set(t0)
	m := New(Options{Now: clk.now})
	obs := func(typ, vmta string, n int) {
		for range n {
			m.Observe(&acct.Record{Type: typ, VMTA: vmta, Queue: "d.test/" + vmta})
		}
	}
	obs("r", "pool", 5)
	obs("d", "v1", 3)
	obs("b", "v2", 1)
	clk.set(t0.Add(time.Second))
	obs("d", "v1", 2)
	obs("t", "v1", 4)
	clk.set(t0.Add(2 * time.Second))
	s := m.Rates.Snapshot()
	n := len(s.Delivered)
	if n != 900 || s.Step != 1 || s.End != t0.Unix()+2 {
		t.Fatalf("series of %d points, step %d, end %d", n, s.Step, s.End)
	}
	if s.Delivered[n-2] != 3 || s.Delivered[n-1] != 2 || s.Received[n-2] != 5 || s.Bounced[n-2] != 1 || s.Deferred[n-1] != 4 {
		t.Errorf("last points: delivered %v received %v bounced %v deferred %v",
			s.Delivered[n-2:], s.Received[n-2:], s.Bounced[n-2:], s.Deferred[n-2:])
	}
	if s.Totals.Delivered != 5 || s.LastMin.Delivered != 5 || s.LastMin.Deferred != 4 {
		t.Errorf("totals %+v, last minute %+v", s.Totals, s.LastMin)
	}
	v1 := s.VMTAs["v1"]
	if len(v1.Delivered) != 90 || v1.Delivered[89] != 5 || v1.Failed[89] != 4 || s.VMTAs["v2"].Failed[89] != 1 {
		t.Errorf("vmta series %+v", s.VMTAs)
	}
	if _, ok := s.VMTAs["pool"]; ok {
		t.Error("receptions counted as VMTA traffic")
	}

	// 15 minutes later the old seconds have left the window.
	clk.set(t0.Add(Window + 2*time.Second))
	obs("d", "v1", 1)
	clk.set(t0.Add(Window + 3*time.Second))
	s = m.Rates.Snapshot()
	var sum uint32
	for _, v := range s.Delivered {
		sum += v
	}
	if sum != 1 || s.Totals.Delivered != 6 {
		t.Errorf("after the window: %d delivered in the series, totals %+v", sum, s.Totals)
	}
}
