package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/fbl/ingest"
	"github.com/sluice-mta/sluice/fbl/suppress"
)

type mux struct{ *http.ServeMux }

func (m mux) Handle(p string, h http.Handler, _ ...string) { m.ServeMux.Handle(p, h) }

// fakeIngester stands in for ingest.Service (our own seam).
type fakeIngester struct{}

func (fakeIngester) Ingest(_ context.Context, kind ingest.Kind, msg []byte) (ingest.Result, error) {
	switch {
	case len(msg) > ingest.MaxSize:
		return ingest.Result{}, ingest.ErrTooLarge
	case strings.Contains(string(msg), "junk"):
		return ingest.Result{Kind: kind}, ingest.ErrNotReport
	}
	return ingest.Result{Kind: kind, Outcome: ingest.OutcomeSuppressed, Recipients: []string{"a@x.test"}}, nil
}

func TestAPI(t *testing.T) {
	store, err := suppress.NewLocal(suppress.NewMemKV(), suppress.WithPurgeInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := mux{http.NewServeMux()}
	Mount(m, fakeIngester{}, store)
	srv := httptest.NewServer(m)
	defer srv.Close()
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	steps := []struct {
		method, path, body string
		code               int
		contains           string
	}{
		{"POST", "/api/v1/fbl", "report", 200, `"outcome": "suppressed"`},
		{"POST", "/api/v1/bounces", "junk", 422, "not a report"},
		{"POST", "/api/v1/fbl", strings.Repeat("x", ingest.MaxSize+1), 413, "10 MiB"},
		{"POST", "/api/v1/suppressions", `{"addr":"A@X.test","note":"n1","ttl":"30d"}`, 201, `"reason": "manual"`},
		{"POST", "/api/v1/suppressions", `{"addr":"nobody"}`, 400, "no @"},
		{"POST", "/api/v1/suppressions", `{"addr":"x@y.test","bogus":1}`, 400, "unknown field"},
		{"GET", "/api/v1/suppressions", "", 200, `"addr": "a@x.test"`},
		{"GET", "/api/v1/suppressions?addr=a@x.test", "", 200, `"suppressed": true`},
		{"GET", "/api/v1/suppressions?addr=b@x.test", "", 200, `"suppressed": false`},
		{"POST", "/api/v1/suppressions/import", "addr,scope,reason\nb@x.test,t1,complaint\n@d.test,,\n", 200, `"imported": 2`},
		{"POST", "/api/v1/suppressions/import", "addr\nnot-an-address\n", 400, "line 2"},
		{"GET", "/api/v1/suppressions/export", "", 200, "b@x.test,t1,complaint"},
		{"DELETE", "/api/v1/suppressions?addr=a@x.test", "", 204, ""},
		{"DELETE", "/api/v1/suppressions?addr=a@x.test", "", 404, "no such entry"},
		{"GET", "/api/v1/suppressions?scope=*&limit=1", "", 200, `"truncated": true`},
	}
	for _, s := range steps {
		code, body := call(s.method, s.path, s.body)
		if code != s.code || !strings.Contains(body, s.contains) {
			t.Errorf("%s %s: %d %s, want %d with %q", s.method, s.path, code, body, s.code, s.contains)
		}
	}
	_, body := call("GET", "/api/v1/suppressions?scope=*", "")
	var out struct{ Entries []Entry }
	json.Unmarshal([]byte(body), &out)
	if len(out.Entries) != 2 {
		t.Errorf("entries after import and remove: %s", body)
	}
}
