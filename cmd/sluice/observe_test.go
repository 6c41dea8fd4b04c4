package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/admin"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/throttle"
)

// TestObservabilityWiring checks what startObservability mounts and feeds:
// /metrics behind the token unless metrics-public, the monitor page, and
// the webhook fed by acct records (a real HTTP receiver on 127.47.3.x).
func TestObservabilityWiring(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	ln, err := net.Listen("tcp", "127.47.3.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b []map[string]any
		json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		got = append(got, b...)
		mu.Unlock()
	}))
	hook.Listener.Close()
	hook.Listener = ln
	hook.Start()
	defer hook.Close()

	const tok = "observe-test-token-0123456789"
	for _, public := range []bool{false, true} {
		cfg := &config.Config{SpoolDir: t.TempDir(), Admin: &config.Admin{Token: tok, MetricsPublic: public}}
		cfg.Webhook = config.Webhook{URL: hook.URL, BatchSize: 1, FlushInterval: config.Duration(10 * time.Millisecond),
			MaxQueued: 10, Timeout: config.Duration(time.Second), MaxRetryDelay: config.Duration(time.Second)}
		aw, err := acct.Open(acct.Options{Dir: t.TempDir()}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		adm := admin.New(admin.Options{Token: tok})
		obs, err := startObservability(cfg, aw, adm, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		aw.Write(&acct.Record{Type: "d", Rcpt: "a@d.test", VMTA: "v1", Queue: "d.test/v1"})

		rec := httptest.NewRecorder()
		adm.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if want := map[bool]int{false: 401, true: 200}[public]; rec.Code != want {
			t.Errorf("metrics-public %v: GET /metrics without token: %d, want %d", public, rec.Code, want)
		}
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec = httptest.NewRecorder()
		adm.ServeHTTP(rec, req)
		if body := rec.Body.String(); rec.Code != 200 || !strings.Contains(body, `sluice_messages_delivered_total{site="d.test",vmta="v1"} 1`) ||
			!strings.Contains(body, "sluice_spool_bytes ") || !strings.Contains(body, "sluice_webhook_sent_events_total") {
			t.Errorf("GET /metrics with the token: %d\n%.2000s", rec.Code, body)
		}
		rec = httptest.NewRecorder()
		adm.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "/ui/app.js") {
			t.Errorf("GET /: %d", rec.Code)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		obs.Close()
		aw.Close()
		mu.Lock()
		if len(got) != 1 || got[0]["event"] != "delivery" || got[0]["rcpt"] != "a@d.test" {
			t.Errorf("webhook received %v", got)
		}
		got = nil
		mu.Unlock()
	}
}

// degrading is a throttle backend that reports Redis down on demand, as
// throttle.Failover does.
type degrading struct {
	throttle.Backend
	down atomic.Bool
}

func (d *degrading) Degraded() bool { return d.down.Load() }

func TestRedisUpGauge(t *testing.T) {
	cfg := &config.Config{SpoolDir: t.TempDir(), Admin: &config.Admin{Token: "x", MetricsPublic: true}}
	cfg.Redis.URL = "redis://127.47.3.2:6379/0"
	aw, err := acct.Open(acct.Options{Dir: t.TempDir()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer aw.Close()
	adm := admin.New(admin.Options{Token: "observe-test-token-0123456789"})
	obs, err := startObservability(cfg, aw, adm, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	b := &degrading{Backend: throttle.NewLocal()}
	defer b.Close()
	obs.wrapThrottle(cfg, b)
	scrape := func() string {
		rec := httptest.NewRecorder()
		adm.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	if s := scrape(); !strings.Contains(s, "\nsluice_redis_up 1\n") {
		t.Errorf("Redis up: no sluice_redis_up 1")
	}
	b.down.Store(true)
	if s := scrape(); !strings.Contains(s, "\nsluice_redis_up 0\n") {
		t.Errorf("Redis down: no sluice_redis_up 0")
	}
}
