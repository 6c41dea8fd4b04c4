package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// Address block of the monitor tests: 127.20.85-89.x.
const (
	monFlowMX  = "127.20.85.1" // d-flow.test's MX: keeps receiving
	monPauseMX = "127.20.85.2" // d-pause.test's MX: the queue paused from the page
	monListen  = "127.20.85.254"
	monAdmin   = "127.20.85.253"
	monToken   = "monitor-e2e-token-0123456789abcdef"
)

// TestMonitorInBrowser drives the web monitor in headless Chromium while
// mail flows to two domains: it logs in with the token, sees the delivered
// count appear and grow, pauses one domain's queue with its button, checks
// through the API and the sinks that that queue stopped while the other
// still delivers, and saves a screenshot.
func TestMonitorInBrowser(t *testing.T) {
	chromium := testenv.RequireTool(t, "chromium", "chromium-browser")
	t0 := time.Now()
	step := func(what string) { t.Logf("%6.2fs %s", time.Since(t0).Seconds(), what) }
	t.Cleanup(func() { step("cleaned up") })
	dns := startDNS(t)
	flow := testenv.StartSink(t, monFlowMX+":25", testenv.SinkOptions{Hostname: "mx.d-flow.test"})
	paused := testenv.StartSink(t, monPauseMX+":25", testenv.SinkOptions{Hostname: "mx.d-pause.test"})
	mxTo(dns, "d-flow.test", monFlowMX)
	mxTo(dns, "d-pause.test", monPauseMX)
	adminAddr := testenv.FreeAddr(t, monAdmin)
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, monListen),
		DNS:    []string{dns.Addr()},
		Domains: map[string]testenv.Domain{
			"*": {MaxSMTPOut: 2, RetryAfter: []string{"1s"}},
		},
		Extra: fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = %q\n", adminAddr, monToken),
	}.TOML())
	testenv.WaitListening(t, adminAddr, 10*time.Second)
	step("daemon started")
	base := "http://" + adminAddr

	// Traffic: a message every 40 ms, alternating between the domains,
	// until the test ends.
	var (
		sent    sync.WaitGroup
		stopped = make(chan struct{})
	)
	sent.Add(1)
	go func() {
		defer sent.Done()
		in := testenv.NewInjector(d.Addr())
		defer in.Close()
		for i := 0; ; i++ {
			select {
			case <-stopped:
				return
			case <-time.After(40 * time.Millisecond):
			}
			domain := "d-flow.test"
			if i%2 == 1 {
				domain = "d-pause.test"
			}
			to := fmt.Sprintf("user%d@%s", i, domain)
			if err := in.Send("sender@e2e.test", []string{to}, testenv.GenMessage(i, 800, to)); err != nil {
				t.Logf("inject %s: %v", to, err)
			}
		}
	}()
	defer func() { close(stopped); sent.Wait(); step("injection stopped") }()
	flow.WaitCount(t, 3, 10*time.Second)
	paused.WaitCount(t, 3, 10*time.Second)

	step("traffic flows to both sinks")
	ctx := browser(t, chromium)
	step("browser started")
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return strings.TrimSpace(s)
	}
	text := func(id string) string {
		t.Helper()
		return eval(fmt.Sprintf(`document.getElementById(%q).textContent`, id))
	}
	number := func(id string) int {
		n, err := strconv.Atoi(text(id))
		if err != nil {
			return -1
		}
		return n
	}
	waitUntil := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	// The page asks for the token; a wrong one is refused.
	run("load the page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("login")))
	run("wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-the-token-at-all"), chromedp.Click(chromedp.ID("login-button")))
	waitUntil("the wrong-token message", 5*time.Second, func() bool { return text("login-error") != "" })
	eval(`document.getElementById('token').value = ''`)
	run("log in",
		chromedp.SendKeys(chromedp.ID("token"), monToken),
		chromedp.Click(chromedp.ID("login-button")),
		chromedp.WaitVisible(chromedp.ID("dashboard")))

	step("logged in")
	// Numbers appear, then change as mail keeps flowing.
	waitUntil("a delivered total", 10*time.Second, func() bool { return number("stat-delivered-total") > 0 })
	first := number("stat-delivered-total")
	waitUntil("the delivered total to grow", 10*time.Second, func() bool { return number("stat-delivered-total") > first })
	if n := eval(`String(document.querySelectorAll('#chart-traffic polyline').length)`); n != "3" {
		t.Errorf("traffic chart has %s lines, want 3 (delivered, deferred, bounced)", n)
	}
	if n := eval(`String(document.querySelectorAll('#chart-vmta polyline').length)`); n == "0" {
		t.Errorf("VMTA chart has no line")
	}

	step("numbers change")
	// Pause d-pause.test's queue with its button.
	pauseBtn := chromedp.CSS(`button[data-action="pause"][data-queue^="d-pause.test/"]`)
	run("find the pause button", chromedp.WaitVisible(pauseBtn))
	run("click pause", chromedp.Click(pauseBtn))
	waitUntil("the API to show the queue paused", 10*time.Second, func() bool {
		q := apiQueue(t, base, "d-pause.test")
		return q != nil && q.Mode == "paused"
	})
	run("the page shows it paused", chromedp.WaitVisible(chromedp.CSS(`button[data-action="resume"][data-queue^="d-pause.test/"]`)))

	step("paused")
	// A transaction in flight may still finish; after that the paused
	// site's sink gets nothing while the other keeps receiving.
	time.Sleep(500 * time.Millisecond)
	pausedAt, flowAt := paused.Count(), flow.Count()
	time.Sleep(2500 * time.Millisecond)
	if n := paused.Count(); n != pausedAt {
		t.Errorf("the paused site's sink received %d more messages", n-pausedAt)
	}
	if n := flow.Count(); n <= flowAt {
		t.Errorf("the other site stopped too: %d then %d", flowAt, n)
	}
	if q := apiQueue(t, base, "d-pause.test"); q == nil || q.Queued == 0 {
		t.Errorf("paused queue %+v: want mail waiting in it", q)
	}
	waitUntil("the page to show mail waiting in the paused queue", 10*time.Second, func() bool {
		n, _ := strconv.Atoi(eval(`(document.querySelector('tr[data-queue^="d-pause.test/"] td.num')||{}).textContent||''`))
		return n > 0
	})

	step("the paused site got nothing, the other kept receiving")
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	saveArtifact(t, "monitor.png", png)
}

// browser starts headless Chromium with a fresh profile and no background
// traffic, and returns a tab's context; both end with the test.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1100),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, cancelTab := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(tab); err != nil { // starts the browser; it lives as long as tab
		t.Fatalf("start %s: %v", path, err)
	}
	ctx, cancel := context.WithTimeout(tab, 90*time.Second) // bounds the test's actions only
	t.Cleanup(cancel)
	return ctx
}

// monQueue is the part of a /api/v1/queues row the test reads.
type monQueue struct {
	Name   string `json:"name"`
	Site   string `json:"site"`
	Mode   string `json:"mode"`
	Queued int    `json:"queued"`
}

// apiQueue returns the queue of site from the admin API, or nil.
func apiQueue(t *testing.T, base, site string) *monQueue {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v1/queues", nil)
	req.Header.Set("Authorization", "Bearer "+monToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/v1/queues: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body struct {
		Queues []monQueue `json:"queues"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &body) != nil {
		t.Fatalf("GET /api/v1/queues: %d %.300s", resp.StatusCode, b)
	}
	for i := range body.Queues {
		if body.Queues[i].Site == site {
			return &body.Queues[i]
		}
	}
	return nil
}

// saveArtifact writes a test artifact to $SLUICE_ARTIFACTS, or to var/artifacts
// under the module root (ignored by git), and logs where.
func saveArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	dir := os.Getenv("SLUICE_ARTIFACTS")
	if dir == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			t.Errorf("artifact %s: %v", name, err)
			return
		}
		dir = filepath.Join(root, "var", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("artifact %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Errorf("artifact %s: %v", name, err)
		return
	}
	t.Logf("artifact: %s (%d bytes)", path, len(data))
}
