package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/queue"
)

// fakeScheduler records the control calls (a hand-written fake of our own
// seam).
type fakeScheduler struct {
	calls  []string
	paused map[string]string
	held   map[string]string
}

func (f *fakeScheduler) Queues() []queue.QueueStatus {
	return []queue.QueueStatus{{Name: "d2.test/v1", Site: "d2.test", VMTA: "v1", Queued: 4, Mode: "paused", Reason: "x"}}
}
func (f *fakeScheduler) Paused() map[string]string   { return f.paused }
func (f *fakeScheduler) HeldJobs() map[string]string { return f.held }
func (f *fakeScheduler) Pause(p, reason string) int {
	f.calls = append(f.calls, "pause "+p+" "+reason)
	return 1
}
func (f *fakeScheduler) Resume(p string) int { f.calls = append(f.calls, "resume "+p); return 1 }
func (f *fakeScheduler) CancelJob(job, cat, diag string) int {
	f.calls = append(f.calls, "cancel-job "+job+" "+cat)
	return 7
}
func (f *fakeScheduler) CancelQueue(p, cat, diag string) int {
	f.calls = append(f.calls, "cancel-queue "+p+" "+cat)
	return 2
}
func (f *fakeScheduler) ReleaseJob(job string) bool { return f.held[job] != "" }

func TestAPI(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tr := NewTracker(func() time.Time { return now })
	for _, typ := range []string{"r", "r", "d", "t", "b", "f"} {
		tr.Observe(&acct.Record{Type: typ, JobID: "j1", Queue: "d2.test/v1", DSNDiag: "smtp;451 busy"})
	}
	fs := &fakeScheduler{held: map[string]string{"j1": "complaints"}}
	srv := New(Options{Token: testToken})
	reloads := 0
	(&API{Scheduler: fs, Tracker: tr, Hostname: "h.test", Version: "v",
		Reload: func(ctx context.Context) ([]string, error) {
			reloads++
			if reloads == 1 {
				return nil, errors.New("sluice.toml: domain.\"*\".max-smtp-out: must be at least 1 (line 3)")
			}
			return []string{"listener"}, nil
		}}).Mount(srv)
	call := func(method, path, body string) (int, map[string]any) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, w.Body)
		}
		return w.Code, m
	}
	cases := []struct {
		method, path, body string
		want               int
		check              string // a substring of the JSON answer
	}{
		{"GET", "/api/v1/status", "", 200, `"delivered":1`},
		{"GET", "/api/v1/queues", "", 200, `"delivered_last_hour":1`},
		{"GET", "/api/v1/queues/d2.test/v1", "", 200, `"type":"f"`},
		{"POST", "/api/v1/queues/pause", `{"pattern":"D2.test","reason":"why"}`, 200, `"pattern":"d2.test/*"`},
		{"POST", "/api/v1/queues/resume", `{"pattern":"d2.test/*"}`, 200, `"resumed":1`},
		{"POST", "/api/v1/delete", `{"job":"j1"}`, 200, `"deleted":7`},
		{"POST", "/api/v1/delete", `{"queue":"*/v1"}`, 200, `"deleted":2`},
		{"POST", "/api/v1/delete", `{"queue":"a/b/c"}`, 400, `"error"`},
		{"GET", "/api/v1/jobs", "", 200, `"complained":1`},
		{"POST", "/api/v1/jobs/resume", `{"job":"j1"}`, 200, `"released":true`},
		{"POST", "/api/v1/jobs/resume", `{"job":"j9"}`, 404, `not held`},
		{"POST", "/api/v1/reload", "", 422, `max-smtp-out`},
		{"POST", "/api/v1/reload", "", 200, `"needs_restart":["listener"]`},
		{"GET", "/api/v1/vmtas", "", 200, `"vmtas":[]`},
	}
	for _, c := range cases {
		code, m := call(c.method, c.path, c.body)
		b, _ := json.Marshal(m)
		if code != c.want || !strings.Contains(string(b), c.check) {
			t.Errorf("%s %s %s = %d %s, want %d with %s", c.method, c.path, c.body, code, b, c.want, c.check)
		}
	}
	want := []string{"pause d2.test/* why", "resume d2.test/*", "cancel-job j1 admin", "cancel-queue */v1 admin"}
	if strings.Join(fs.calls, "|") != strings.Join(want, "|") {
		t.Errorf("scheduler calls %q, want %q", fs.calls, want)
	}
}

func TestTrackerWindowsAndBounds(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tr := NewTracker(func() time.Time { return now })
	tr.Observe(&acct.Record{Type: "d", Queue: "q/v"})
	now = now.Add(30 * time.Minute)
	tr.Observe(&acct.Record{Type: "d", Queue: "q/v"})
	now = now.Add(40 * time.Minute)
	tr.Observe(&acct.Record{Type: "d", Queue: "q/v"})
	tf := tr.Traffic()
	if tf.LastMinute.Delivered != 1 || tf.LastHour.Delivered != 2 || tf.SinceStart.Delivered != 3 {
		t.Errorf("traffic %+v", tf)
	}
	if st := tr.Queue("q/v"); st.DeliveredLastHour != 2 {
		t.Errorf("queue stats %+v", st)
	}
	for i := range EventsPerQueue + 10 {
		tr.Observe(&acct.Record{Type: "t", Queue: "q/v", Rcpt: strings.Repeat("x", i%3+1), DSNDiag: "smtp;451"})
	}
	if ev := tr.Events("q/v"); len(ev) != EventsPerQueue || ev[len(ev)-1].Type != "t" {
		t.Errorf("%d events", len(ev))
	}
	for i := range maxJobs + 5 {
		now = now.Add(time.Millisecond)
		tr.Observe(&acct.Record{Type: "r", JobID: "job" + strings.Repeat("0", i%2) + string(rune('a'+i%26)) + time.Duration(i).String()})
	}
	if n := len(tr.Jobs()); n > maxJobs {
		t.Errorf("%d jobs kept, bound %d", n, maxJobs)
	}
}
