package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestMetricsAndWebhook runs the daemon with [admin] and [webhook]: the
// Prometheus counters move with traffic (delivered, bounced by category,
// received, the latency histogram), /metrics refuses a request without the
// token, and the webhook receives one delivery or bounce event per
// recipient, in batches no larger than batch-size. Block 127.20.86.x.
func TestMetricsAndWebhook(t *testing.T) {
	const (
		mx    = "127.20.86.1"
		token = "metrics-e2e-token-0123456789abcdef"
	)
	dns := startDNS(t)
	testenv.StartSink(t, mx+":25", testenv.SinkOptions{Hostname: "mx.d-metrics.test",
		RcptReply: func(rcpt string, _ int) (int, string, string) {
			if strings.HasPrefix(rcpt, "bad") {
				return 550, "5.1.1", "no such user"
			}
			return 0, "", ""
		}})
	mxTo(dns, "d-metrics.test", mx)
	hook := startHookReceiver(t, "127.20.86.2")
	adminAddr := testenv.FreeAddr(t, "127.20.86.253")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.86.254"),
		DNS:    []string{dns.Addr()},
		Extra: fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = %q\n"+
			"\n[webhook]\nurl = %q\nbatch-size = 5\nflush-interval = \"200ms\"\n"+
			"\n[acct-file]\nmax-size = \"1M\"\nmove-interval = \"1h\"\ndelete-after = \"30d\"\n",
			adminAddr, token, hook.url),
	}.TOML())
	testenv.WaitListening(t, adminAddr, 10*time.Second)
	base := "http://" + adminAddr

	send := func(from, n int, local string) {
		for i := from; i < from+n; i++ {
			sendOne(t, d.Addr(), fmt.Sprintf("%s%d@d-metrics.test", local, i))
		}
	}
	send(0, 10, "ok")
	send(0, 3, "bad")
	d.WaitAcct(t, testenv.OfType("d", "b"), 13, 20*time.Second)

	if code, _ := scrapeMetrics(t, base, ""); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without the token: %d, want 401", code)
	}
	want := map[string]float64{
		`sluice_messages_delivered_total{site="d-metrics.test",vmta="default"}`:                      10,
		`sluice_messages_bounced_total{category="bad-mailbox",site="d-metrics.test",vmta="default"}`: 3,
		`sluice_messages_received_total{site="d-metrics.test",vmta="default"}`:                       13,
		`sluice_delivery_latency_seconds_count`:                                                      10,
		`sluice_connections_in`:                                                                      0,
		`sluice_connections_out`:                                                                     -1, // present
		`sluice_spool_bytes`:                                                                         -1,
		`sluice_queued_recipients`:                                                                   0,
		`sluice_webhook_dropped_events_total`:                                                        0,
	}
	checkMetrics(t, base, token, want)

	// Counters move with traffic.
	send(10, 5, "ok")
	d.WaitAcct(t, testenv.OfType("d"), 15, 20*time.Second)
	checkMetrics(t, base, token, map[string]float64{
		`sluice_messages_delivered_total{site="d-metrics.test",vmta="default"}`: 15,
		`sluice_delivery_latency_seconds_count`:                                 15,
	})

	// The webhook: one event per recipient outcome.
	deadline := time.Now().Add(10 * time.Second)
	for hook.count() < 18 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	evs, batches := hook.snapshot()
	kinds := map[string]int{}
	for _, e := range evs {
		kinds[e["event"].(string)]++
		if e["rcpt"] == nil || e["id"] == nil || e["queue"] != "d-metrics.test/default" {
			t.Errorf("event %v lacks rcpt, id or queue", e)
		}
	}
	if kinds["delivery"] != 15 || kinds["bounce"] != 3 || len(evs) != 18 {
		t.Errorf("webhook got %v (%d events), want 15 delivery and 3 bounce", kinds, len(evs))
	}
	for _, n := range batches {
		if n > 5 {
			t.Errorf("a batch of %d events, batch-size is 5", n)
		}
	}
	t.Logf("%d webhook events in %d batches", len(evs), len(batches))
}

// scrapeMetrics GETs /metrics, with the token unless it is "".
func scrapeMetrics(t *testing.T, base, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// checkMetrics scrapes and compares each series with its value; -1 means
// the series must only be present. Gauges may lag by a scrape's caching,
// so it retries for a few seconds.
func checkMetrics(t *testing.T, base, token string, want map[string]float64) {
	t.Helper()
	var bad []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		code, text := scrapeMetrics(t, base, token)
		if code != 200 {
			t.Fatalf("GET /metrics: %d %.300s", code, text)
		}
		got := map[string]float64{}
		for _, line := range strings.Split(text, "\n") {
			if name, val, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
				if v, err := strconv.ParseFloat(val, 64); err == nil {
					got[name] = v
				}
			}
		}
		bad = bad[:0]
		for name, w := range want {
			v, ok := got[name]
			if !ok || (w >= 0 && v != w) {
				bad = append(bad, fmt.Sprintf("%s = %v (present %v), want %v", name, v, ok, w))
			}
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, b := range bad {
		t.Error(b)
	}
}

// hookReceiver is a real HTTP server that records webhook batches.
type hookReceiver struct {
	url     string
	mu      sync.Mutex
	events  []map[string]any
	batches []int
}

func startHookReceiver(t *testing.T, ip string) *hookReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{url: "http://" + ln.Addr().String() + "/events"}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []map[string]any
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, batch...)
		h.batches = append(h.batches, len(batch))
		h.mu.Unlock()
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *hookReceiver) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.events)
}

func (h *hookReceiver) snapshot() ([]map[string]any, []int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.events...), append([]int(nil), h.batches...)
}
