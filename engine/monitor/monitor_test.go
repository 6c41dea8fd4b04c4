package monitor

import (
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/admin"
	"github.com/sluice-mta/sluice/engine/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "monitor-test-token-0123456789"

// serve runs the admin server with the monitor mounted on 127.47.2.x.
func serve(t *testing.T, ip string) (*httptest.Server, *metrics.Metrics) {
	t.Helper()
	m := metrics.New(metrics.Options{})
	adm := admin.New(admin.Options{Token: token})
	Mount(adm, Options{Rates: m.Rates, CookieName: admin.CookieName})
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(adm)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, m
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestPageAndAssetsArePublicAndSelfContained(t *testing.T) {
	srv, _ := serve(t, "127.47.2.1")
	c := srv.Client()
	resp, body := get(t, c, srv.URL+"/")
	if resp.StatusCode != 200 || !strings.Contains(body, `src="/ui/app.js"`) {
		t.Fatalf("GET /: %d %.200s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	for _, p := range []string{"/ui/app.js", "/ui/app.css"} {
		resp, body := get(t, c, srv.URL+p)
		if resp.StatusCode != 200 || len(body) < 500 {
			t.Errorf("GET %s: %d, %d bytes", p, resp.StatusCode, len(body))
		}
	}
	if resp, _ := get(t, c, srv.URL+"/ui/"); resp.StatusCode != 404 {
		t.Errorf("GET /ui/: %d, want no listing", resp.StatusCode)
	}
	// Nothing is loaded from elsewhere: the only absolute URL is the SVG
	// namespace name.
	url := regexp.MustCompile(`(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := static.ReadFile(path)
		for _, u := range url.FindAllString(string(b), -1) {
			if u != "http://www.w3.org" {
				t.Errorf("%s refers to %s", path, u)
			}
		}
		return nil
	})
}

func TestLoginSetsCookieThatOpensTheAPI(t *testing.T) {
	srv, m := serve(t, "127.47.2.2")
	m.Observe(&acct.Record{Type: "d", VMTA: "v1", Queue: "d.test/v1"})
	jar, _ := cookiejar.New(nil)
	c := srv.Client()
	c.Jar = jar

	if resp, _ := get(t, c, srv.URL+"/api/v1/monitor/rates"); resp.StatusCode != 401 {
		t.Fatalf("rates without login: %d", resp.StatusCode)
	}
	login := func(tok string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+"/ui/login", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := login("wrong-token-wrong-token"); resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp := login(token)
	if resp.StatusCode != 204 || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	ck := resp.Cookies()[0]
	if ck.Name != admin.CookieName || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/", ck)
	}
	resp, body := get(t, c, srv.URL+"/api/v1/monitor/rates")
	if resp.StatusCode != 200 {
		t.Fatalf("rates after login: %d %s", resp.StatusCode, body)
	}
	var s metrics.Series
	if err := json.Unmarshal([]byte(body), &s); err != nil || len(s.Delivered) != 900 || s.Totals.Delivered != 1 {
		t.Fatalf("rates: %v, %d points, totals %+v", err, len(s.Delivered), s.Totals)
	}

	// A change through the cookie must come from the page's own origin.
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/queues/pause", strings.NewReader(`{}`))
	req.Header.Set("Origin", "https://evil.example")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("cross-origin POST with the cookie: %d, want 403", resp.StatusCode)
	}

	req, _ = http.NewRequest("POST", srv.URL+"/ui/logout", nil)
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp, _ := get(t, c, srv.URL+"/api/v1/monitor/rates"); resp.StatusCode != 401 {
		t.Errorf("rates after logout: %d", resp.StatusCode)
	}
}
