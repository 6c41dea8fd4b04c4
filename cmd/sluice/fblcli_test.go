package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFBLCLI runs the fbl, bounce and suppress commands against a stand-in
// for the admin API on 127.32.9.1 and checks the requests they make.
func TestFBLCLI(t *testing.T) {
	var seen []string
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer cli-test-token-0123456789" {
			w.WriteHeader(401)
			return
		}
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" "+strings.TrimSpace(string(body)))
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/v1/fbl"):
			w.Write([]byte(`{"kind":"fbl","format":"arf","recipients":["a@x.test"],"outcome":"suppressed"}`))
		case r.URL.Path == "/api/v1/suppressions" && r.Method == "GET":
			w.Write([]byte(`{"entries":[{"addr":"a@x.test","reason":"complaint","added":"2026-11-28T10:00:00Z"}],"truncated":false}`))
		case r.URL.Path == "/api/v1/suppressions/export":
			w.Write([]byte("addr,scope,reason,added,expires,note\na@x.test,,complaint,,,\n"))
		case r.URL.Path == "/api/v1/bounces":
			w.WriteHeader(422)
			w.Write([]byte(`{"error":"not a report"}`))
		default:
			w.WriteHeader(201)
			w.Write([]byte(`{}`))
		}
	})
	ln, err := net.Listen("tcp", "127.32.9.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte("[[listener]]\naddress = \"127.0.0.1:2525\"\n[admin]\nlisten = \""+ln.Addr().String()+"\"\ntoken = \"cli-test-token-0123456789\"\n"), 0o600)
	report := filepath.Join(dir, "r.eml")
	os.WriteFile(report, []byte("report"), 0o600)

	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"fbl", "ingest", report, "--config", cfg}, 0, "suppressed arf a@x.test"},
		{[]string{"bounce", "ingest", "--config", cfg, report}, 1, ""},
		{[]string{"suppress", "add", "--config", cfg, "--reason", "manual", "--ttl", "30d", "b@x.test"}, 0, "suppressed b@x.test"},
		{[]string{"suppress", "list", "--config", cfg}, 0, "a@x.test  -      complaint"},
		{[]string{"suppress", "export", "--config", cfg}, 0, "a@x.test,,complaint"},
		{[]string{"suppress", "remove", "--config", cfg, "--scope", "t1", "b@x.test"}, 0, "removed b@x.test"},
		{[]string{"suppress", "frob", "--config", cfg}, 2, ""},
		{[]string{"suppress", "add"}, 2, ""},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String(), c.out) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", c.args, code, out.String(), errb.String(), c.code, c.out)
		}
	}
	want := []string{
		"POST /api/v1/fbl report",
		"POST /api/v1/bounces report",
		`POST /api/v1/suppressions {"addr":"b@x.test","note":"","reason":"manual","scope":"","ttl":"30d"}`,
		"GET /api/v1/suppressions?scope= ",
		"GET /api/v1/suppressions/export?scope=%2A ",
		"DELETE /api/v1/suppressions?addr=b%40x.test&scope=t1 ",
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}
