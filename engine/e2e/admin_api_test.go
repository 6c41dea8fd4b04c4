package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestAdminToken: every endpoint refuses a request without the token, or
// with a wrong one, with a JSON error; with it, the API answers.
func TestAdminToken(t *testing.T) {
	dns := startDNS(t)
	d := startAdminDaemon(t, "127.20.80.1", testenv.Config{
		Listen: listenAddr(t, "127.20.80.1"),
		DNS:    []string{dns.Addr()},
	})
	paths := []struct{ method, path, body string }{
		{"GET", "/api/v1/status", ""},
		{"GET", "/api/v1/queues", ""},
		{"GET", "/api/v1/queues/x.test/default", ""},
		{"GET", "/api/v1/jobs", ""},
		{"GET", "/api/v1/vmtas", ""},
		{"GET", "/api/v1/healthz", ""},
		{"GET", "/api/v1/readyz", ""},
		{"POST", "/api/v1/queues/pause", `{"pattern":"x.test/*"}`},
		{"POST", "/api/v1/queues/resume", `{"pattern":"x.test/*"}`},
		{"POST", "/api/v1/delete", `{"job":"j"}`},
		{"POST", "/api/v1/jobs/resume", `{"job":"j"}`},
		{"POST", "/api/v1/reload", ""},
		{"GET", "/api/v1/nothing-here", ""},
	}
	for _, p := range paths {
		for _, tok := range []string{"", "wrong-token-0123456789", adminToken[:len(adminToken)-1]} {
			var e struct{ Error string }
			if code := d.call(t, p.method, p.path, tok, p.body, &e); code != 401 || e.Error == "" {
				t.Errorf("%s %s with token %q: %d %q, want 401 with a JSON error", p.method, p.path, tok, code, e.Error)
			}
		}
	}
	var st map[string]any
	if code := d.call(t, "GET", "/api/v1/status", adminToken, "", &st); code != 200 || st["redis"] != "off" {
		t.Errorf("status with the token: %d %v", code, st)
	}
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/v1/readyz", "", 200},
		{"GET", "/api/v1/nothing-here", "", 404},
		{"POST", "/api/v1/queues/pause", `{"pattern":"a/b/c"}`, 400},
		{"POST", "/api/v1/queues/pause", `{"pattern":"x","bogus":1}`, 400},
		{"POST", "/api/v1/queues/resume", `{"pattern":"never.test/*"}`, 404},
		{"POST", "/api/v1/delete", `{}`, 400},
		{"POST", "/api/v1/jobs/resume", `{"job":"not-held"}`, 404},
		{"GET", "/api/v1/queues/none.test/default", "", 404},
	} {
		var e struct{ Error string }
		if code := d.call(t, c.method, c.path, adminToken, c.body, &e); code != c.want || (code >= 400 && e.Error == "") {
			t.Errorf("%s %s %s: %d %q, want %d", c.method, c.path, c.body, code, e.Error, c.want)
		}
	}
	// The CLI exits non-zero on the daemon's errors and on a wrong token.
	if out, code := adminCLI(t, "resume", "queue", "never.test/*", "--config", d.ConfigPath); code != 1 || !strings.Contains(out, "no pause matches") {
		t.Errorf("resume of nothing: exit %d\n%s", code, out)
	}
	if out, code := adminCLI(t, "show", "status", "--server", d.api, "--token", "wrong-token-0123456789"); code != 1 || !strings.Contains(out, "401") {
		t.Errorf("wrong token: exit %d\n%s", code, out)
	}
	if out, code := adminCLI(t, "show", "nonsense", "--config", d.ConfigPath); code != 2 {
		t.Errorf("show nonsense: exit %d\n%s", code, out)
	}
}

// TestAdminPauseResume: pausing d2.test/* holds its mail while other mail
// flows; `sluice show queues` lists the live queues, d2's as paused; and
// resuming releases the held mail.
func TestAdminPauseResume(t *testing.T) {
	dns := startDNS(t)
	s1 := testenv.StartSink(t, "127.20.81.1:25", testenv.SinkOptions{})
	s2 := testenv.StartSink(t, "127.20.81.2:25", testenv.SinkOptions{})
	mxTo(dns, "d1.test", "127.20.81.1")
	mxTo(dns, "d2.test", "127.20.81.2")
	d := startAdminDaemon(t, "127.20.81.253", testenv.Config{
		Listen: listenAddr(t, "127.20.81.254"),
		DNS:    []string{dns.Addr()},
	})
	out := adminMustCLI(t, "pause", "queue", "d2.test/*", "--reason", "e2e maintenance", "--config", d.ConfigPath)
	if !strings.Contains(out, "paused d2.test/*") {
		t.Errorf("pause said %q", out)
	}
	for i := range 3 {
		for _, dom := range []string{"d1.test", "d2.test"} {
			rcpt := fmt.Sprintf("u%d@%s", i, dom)
			if err := testenv.Inject(t, d.Addr(), "s@sender.test", []string{rcpt}, testenv.GenMessage(i, 500, rcpt)); err != nil {
				t.Fatal(err)
			}
		}
	}
	s1.WaitCount(t, 3, 15*time.Second)
	time.Sleep(time.Second) // d2's mail had time to go, if the pause leaked
	if n := s2.Count(); n != 0 {
		t.Fatalf("paused d2.test received %d messages", n)
	}
	q := d.apiQueues(t)["d2.test/default"]
	if q == nil || q["mode"] != "paused" || q["reason"] != "e2e maintenance" || q["queued"] != float64(3) {
		t.Fatalf("d2.test/default in the API: %v", q)
	}

	out = adminMustCLI(t, "show", "queues", "--config", d.ConfigPath)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "QUEUE ") {
		t.Fatalf("show queues:\n%s", out)
	}
	var d1, d2 []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		switch f[0] {
		case "d1.test/default":
			d1 = f
		case "d2.test/default":
			d2 = f
		}
	}
	if d2 == nil || d2[1] != "paused" || d2[2] != "3" || d1 == nil || d1[1] != "normal" {
		t.Errorf("show queues:\n%s", out)
	}
	if col := strings.Index(lines[0], "MODE"); col < 0 || !strings.HasPrefix(lines[1][col:], "normal") && !strings.HasPrefix(lines[1][col:], "paused") {
		t.Errorf("show queues columns are not aligned:\n%s", out)
	}
	out = adminMustCLI(t, "show", "topdomains", "--config", d.ConfigPath)
	if f := strings.Fields(strings.Split(out, "\n")[1]); f[0] != "d2.test" || f[1] != "3" {
		t.Errorf("show topdomains:\n%s", out)
	}
	if out := adminMustCLI(t, "show", "queues", "--json", "--config", d.ConfigPath); !strings.Contains(out, `"name": "d2.test/default"`) {
		t.Errorf("show queues --json:\n%s", out)
	}

	adminMustCLI(t, "resume", "queue", "d2.test/*", "--config", d.ConfigPath)
	s2.WaitCount(t, 3, 15*time.Second)
	d.WaitAcct(t, testenv.OfType("d"), 6, 10*time.Second)
	var detail struct {
		Mode   string
		Events []struct{ Type, Rcpt string }
	}
	if code := d.call(t, "GET", "/api/v1/queues/d2.test/default", adminToken, "", &detail); code != 200 {
		t.Fatalf("queue detail: %d", code)
	}
	types := ""
	for _, e := range detail.Events {
		types += e.Type + " "
	}
	if detail.Mode != "normal" || !strings.Contains(types, "resume d d d") {
		t.Errorf("d2.test/default after resume: mode %q, events %q", detail.Mode, types)
	}
}
