package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// Addresses of these tests: 127.30.22.0/24 – 127.30.25.0/24 (Params.Net).

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func params(t *testing.T, scenario string, net int) Params {
	return Params{
		Scenario: scenario, Messages: 200, Sessions: 4, PerSession: 20, Net: net,
		Timeout: 60 * time.Second, Sluice: testenv.BuildSluice(t), Progress: testWriter{t},
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestClean(t *testing.T) {
	p := params(t, "clean", 22)
	p.PprofDir = t.TempDir()
	p.PprofSeconds = 1
	res, err := Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 2 || res.Phases[0].Name != "ceiling" || res.Phases[1].Name != "sluice" {
		t.Fatalf("phases %+v", res.Phases)
	}
	s := res.Phases[1]
	// The two rates are timed from different instants: allow a rounding gap.
	if s.Messages != 200 || s.Recipients != 200 || s.E2ERate <= 0 || s.InjectRate < 0.99*s.E2ERate ||
		s.P50 <= 0 || s.P99 < s.P50 || s.CPUPer1k <= 0 || s.PeakRSSMB <= 0 || res.Ratios["sluice/ceiling"] <= 0 {
		t.Errorf("sluice phase %+v, ratios %v", s, res.Ratios)
	}
	if !strings.Contains(s.Sink, "200 messages") {
		t.Errorf("sink counts %q", s.Sink)
	}
	for _, f := range []string{"sluice.heap.pprof"} {
		if fi, err := os.Stat(filepath.Join(p.PprofDir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", f, err)
		}
	}
	var table, js bytes.Buffer
	res.WriteTable(&table)
	if !strings.Contains(table.String(), "sluice/ceiling") || !strings.Contains(table.String(), "p99 ms") {
		t.Errorf("table:\n%s", table.String())
	}
	if err := res.WriteJSON(&js); err != nil || !json.Valid(js.Bytes()) {
		t.Errorf("json: %v\n%s", err, js.String())
	}
}

func TestDeferrals(t *testing.T) {
	p := params(t, "deferrals", 23)
	p.Domains = 2 // every message goes to a deferring domain
	res, err := Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Phases[1]
	if s.Recipients != 200 || !strings.Contains(s.Sink, "451×") || s.P99 < 1000 {
		t.Errorf("deferrals: %+v (want 451s and a p99 past the 2s retry)", s)
	}
}

func TestBacklog(t *testing.T) {
	p := params(t, "backlog", 24)
	p.Recipients, p.RcptsPerMsg = 2000, 50
	res, err := Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	b := res.Backlog
	if b == nil || b.Recipients != 2000 || b.Messages != 40 || b.RSSQueuedMB <= 0 || b.RestartReadyS <= 0 ||
		b.RestartResumeS <= 0 || b.DrainRcptRate <= 0 {
		t.Errorf("backlog %+v", b)
	}
}

func TestPeer(t *testing.T) {
	if _, ok := postfixAvailable(); !ok {
		testenv.RequireTool(t, "postfix", "/usr/sbin/postfix")
	}
	p := params(t, "peer", 25)
	res, err := Run(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 3 || res.Phases[2].Name != "postfix" || res.Phases[2].Messages != 200 || res.Ratios["sluice/postfix"] <= 0 {
		t.Errorf("peer: %+v %v", res.Phases, res.Ratios)
	}
}

func TestNotAvailable(t *testing.T) {
	if _, err := Run(context.Background(), Params{Scenario: "nope"}); err == nil {
		t.Error("unknown scenario accepted")
	}
}

func TestRedisAndThrottled(t *testing.T) {
	testenv.RequireTool(t, "redis-server", "/usr/bin/redis-server")
	res, err := Run(context.Background(), params(t, "redis", 26))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 3 || res.Phases[2].Messages != 200 || res.Ratios["redis/embedded"] <= 0 {
		t.Errorf("redis: %+v %v", res.Phases, res.Ratios)
	}
	res, err = Run(context.Background(), params(t, "throttled", 27))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 1 || res.Phases[0].Messages != 200 || res.Ratios["e2e/cap"] <= 0 || res.Ratios["e2e/cap"] > 1.2 {
		t.Errorf("throttled: %+v %v", res.Phases, res.Ratios)
	}
}
