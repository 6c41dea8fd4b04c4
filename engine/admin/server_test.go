package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "0123456789abcdef-admin"

func newTestServer(t *testing.T) *Server {
	t.Helper()
	s := New(Options{Token: testToken})
	s.Handle("GET /api/v1/hello", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		JSON(w, 200, map[string]string{"hello": "world"})
	}))
	s.Handle("POST /api/v1/fbl", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		JSON(w, 200, map[string]bool{"ok": true})
	}), "fbl-token-0123456789")
	return s
}

func do(t *testing.T, s http.Handler, method, path string, hdr map[string]string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func TestAuth(t *testing.T) {
	s := newTestServer(t)
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		want               int
	}{
		{"no token", "GET", "/api/v1/hello", nil, 401},
		{"wrong token", "GET", "/api/v1/hello", bearer("nope"), 401},
		{"prefix of token", "GET", "/api/v1/hello", bearer(testToken[:10]), 401},
		{"basic scheme", "GET", "/api/v1/hello", map[string]string{"Authorization": "Basic " + testToken}, 401},
		{"admin token", "GET", "/api/v1/hello", bearer(testToken), 200},
		{"lower-case scheme", "GET", "/api/v1/hello", map[string]string{"Authorization": "bearer " + testToken}, 200},
		{"extra token elsewhere", "GET", "/api/v1/hello", bearer("fbl-token-0123456789"), 401},
		{"extra token on its route", "POST", "/api/v1/fbl", bearer("fbl-token-0123456789"), 200},
		{"admin token on extra route", "POST", "/api/v1/fbl", bearer(testToken), 200},
		{"cookie", "GET", "/api/v1/hello", map[string]string{"Cookie": CookieName + "=" + testToken}, 200},
		{"cookie cross-site post", "POST", "/api/v1/fbl", map[string]string{"Cookie": CookieName + "=" + testToken, "Origin": "http://evil.test"}, 403},
		{"cookie same-origin post", "POST", "/api/v1/fbl", map[string]string{"Cookie": CookieName + "=" + testToken, "Origin": "http://example.com"}, 200},
		{"unknown route needs token", "GET", "/api/v1/nothing", nil, 401},
		{"unknown route", "GET", "/api/v1/nothing", bearer(testToken), 404},
		{"healthz needs token", "GET", "/api/v1/healthz", nil, 401},
		{"healthz", "GET", "/api/v1/healthz", bearer(testToken), 200},
		{"readyz before ready", "GET", "/api/v1/readyz", bearer(testToken), 503},
	}
	for _, c := range cases {
		code, body := do(t, s, c.method, c.path, c.hdr)
		if code != c.want {
			t.Errorf("%s: %s %s = %d %s, want %d", c.name, c.method, c.path, code, body, c.want)
		}
		if code >= 400 {
			var e ErrorBody
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
				t.Errorf("%s: error body %q is not {\"error\": ...}", c.name, body)
			}
			if strings.Contains(body, testToken) {
				t.Errorf("%s: body reveals the token", c.name)
			}
		}
	}
	s.SetReady(true)
	if code, _ := do(t, s, "GET", "/api/v1/readyz", bearer(testToken)); code != 200 {
		t.Errorf("readyz after SetReady = %d", code)
	}
	s.SetToken("another-token-0123456789")
	if code, _ := do(t, s, "GET", "/api/v1/hello", bearer(testToken)); code != 401 {
		t.Errorf("old token after SetToken = %d, want 401", code)
	}
}

func TestServeAndShutdown(t *testing.T) {
	s := newTestServer(t)
	if err := s.Start("127.42.0.1:0"); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+s.Addr().String()+"/api/v1/hello", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "world") {
		t.Errorf("GET = %d %s", resp.StatusCode, b)
	}
	http.DefaultClient.CloseIdleConnections()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeJSON(t *testing.T) {
	var v struct{ Pattern string }
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"pattern":"a/*"}`))
	if err := DecodeJSON(r, &v); err != nil || v.Pattern != "a/*" {
		t.Errorf("DecodeJSON = %v, %+v", err, v)
	}
	r = httptest.NewRequest("POST", "/", strings.NewReader(`{"other":1}`))
	if err := DecodeJSON(r, &v); err == nil {
		t.Error("unknown field accepted")
	}
	r = httptest.NewRequest("POST", "/", strings.NewReader(``))
	if err := DecodeJSON(r, &v); err != nil {
		t.Errorf("empty body: %v", err)
	}
}
