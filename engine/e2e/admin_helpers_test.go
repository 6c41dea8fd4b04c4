package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// Admin API tests use 127.20.80.0/22 through 127.20.84.0/24.

const adminToken = "e2e-admin-token-0123456789"

// adminDaemon is a daemon with its admin API.
type adminDaemon struct {
	*testenv.Daemon
	api string // "host:port"
}

// startAdminDaemon starts a daemon whose admin API listens on a free port
// of ip; cfg is the rest of its config.
func startAdminDaemon(t *testing.T, ip string, cfg testenv.Config) *adminDaemon {
	t.Helper()
	api := testenv.FreeAddr(t, ip)
	cfg.Extra += fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = %q\n", api, adminToken)
	d := testenv.StartDaemon(t, cfg.TOML())
	testenv.WaitListening(t, api, 10*time.Second)
	return &adminDaemon{Daemon: d, api: api}
}

// call does one API request with token (none when empty) and decodes the
// JSON answer into out (when not nil); it returns the status code.
func (d *adminDaemon) call(t *testing.T, method, path, token, body string, out any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+d.api+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

// adminCLI runs the sluice binary with args and returns its output and exit
// code.
func adminCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(testenv.BuildSluice(t), args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run sluice %v: %v", args, err)
	}
	return string(out), code
}

// adminMustCLI runs the CLI and fails the test unless it exits 0.
func adminMustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, code := adminCLI(t, args...)
	if code != 0 {
		t.Fatalf("sluice %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// apiQueues returns the queues of the admin API by name.
func (d *adminDaemon) apiQueues(t *testing.T) map[string]map[string]any {
	t.Helper()
	var v struct{ Queues []map[string]any }
	if code := d.call(t, "GET", "/api/v1/queues", adminToken, "", &v); code != 200 {
		t.Fatalf("GET queues: %d", code)
	}
	m := map[string]map[string]any{}
	for _, q := range v.Queues {
		m[q["name"].(string)] = q
	}
	return m
}

// adminJobMessage is a message of job (X-Job header) to rcpt.
func adminJobMessage(i int, job, rcpt string) []byte {
	return append([]byte("X-Job: "+job+"\r\n"), testenv.GenMessage(i, 300, rcpt)...)
}

// adminWaitFor polls cond every 50 ms until it holds or timeout passes.
func adminWaitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
