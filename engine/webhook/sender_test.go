package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/sluice-mta/sluice/engine/acct"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// endpoint is a real HTTP server on this package's loopback block that
// records the batches it accepts; fail decides the status of each request
// (0: 200).
type endpoint struct {
	srv *httptest.Server

	mu       sync.Mutex
	batches  [][]Event
	requests int
	sigs     []string
	fail     func(n int) int // n: 1-based request number
}

func newEndpoint(t *testing.T, ip string) *endpoint {
	t.Helper()
	e := &endpoint{}
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	e.srv.Listener.Close()
	e.srv.Listener = ln
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	if e.fail != nil {
		if code := e.fail(e.requests); code != 0 {
			w.WriteHeader(code)
			return
		}
	}
	var b []Event
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &b) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	e.batches = append(e.batches, b)
	e.sigs = append(e.sigs, r.Header.Get(SignatureHeader)+" "+Sign("s3cret", body))
}

func (e *endpoint) events() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var all []Event
	for _, b := range e.batches {
		all = append(all, b...)
	}
	return all
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// start runs s until the test ends.
func start(t *testing.T, s *Sender) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func rec(typ string, i int) *acct.Record {
	return &acct.Record{Type: typ, TimeLogged: t0.Add(time.Duration(i) * time.Second), TimeQueued: t0,
		Rcpt: fmt.Sprintf("u%d@d1.test", i), Orig: "news@ex.test", JobID: "spring", VMTA: "v1", Queue: "d1.test/v1",
		DSNStatus: "2.0.0 (success)", DSNDiag: "smtp;250 ok", DlvSourceIP: "127.0.0.2"}
}

func TestBatchesAndMapping(t *testing.T) {
	ep := newEndpoint(t, "127.47.1.1")
	s, err := New(Options{URL: ep.srv.URL + "/hook", BatchSize: 3, FlushInterval: 100 * time.Millisecond,
		Secret: "s3cret", Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	for i := range 7 {
		s.Observe(rec(acct.TypeDelivered, i))
	}
	s.Observe(rec(acct.TypeReceived, 100))  // not an event
	s.Observe(rec(acct.TypeTransient, 101)) // not an event
	b := rec(acct.TypeBounced, 7)
	b.BounceCat, b.DSNStatus = "bad-mailbox", "5.1.1 (bad destination mailbox address)"
	s.Observe(b)
	f := rec(acct.TypeFeedback, 8)
	f.FeedbackType = "abuse"
	s.Observe(f)
	u := rec(acct.TypeFeedback, 9)
	u.FeedbackType = "unsubscribe"
	s.Observe(u)
	rb := rec(acct.TypeRemoteBounce, 10)
	s.Observe(rb)

	waitFor(t, "11 events", func() bool { return len(ep.events()) == 11 })
	// The endpoint has the events before the sender has read its reply.
	waitFor(t, "11 sent", func() bool { return s.Stats().Sent == 11 })
	evs := ep.events()
	for i, ev := range evs {
		if want := fmt.Sprintf("u%d@d1.test", i); ev.Rcpt != want {
			t.Errorf("event %d rcpt %q, want %q (in order)", i, ev.Rcpt, want)
		}
	}
	wantNames := []string{"delivery", "delivery", "delivery", "delivery", "delivery", "delivery", "delivery",
		"bounce", "complaint", "unsubscribe", "bounce"}
	ids := map[string]bool{}
	for i, ev := range evs {
		if ev.Event != wantNames[i] {
			t.Errorf("event %d is %q, want %q", i, ev.Event, wantNames[i])
		}
		if ids[ev.ID] || ev.ID == "" {
			t.Errorf("event %d id %q not unique", i, ev.ID)
		}
		ids[ev.ID] = true
	}
	if ev := evs[7]; ev.BounceCat != "bad-mailbox" || ev.JobID != "spring" || ev.Queue != "d1.test/v1" ||
		!ev.Time.Equal(t0.Add(7*time.Second)) || !ev.QueuedAt.Equal(t0) || ev.SourceIP != "127.0.0.2" {
		t.Errorf("bounce event %+v", ev)
	}
	if !evs[10].Remote || evs[7].Remote {
		t.Errorf("remote flags: rb %v, b %v", evs[10].Remote, evs[7].Remote)
	}
	ep.mu.Lock()
	for i, b := range ep.batches {
		if len(b) > 3 {
			t.Errorf("batch %d has %d events, batch-size 3", i, len(b))
		}
	}
	for _, sg := range ep.sigs {
		var got, want string
		fmt.Sscan(sg, &got, &want)
		if got != want {
			t.Errorf("signature %q, want %q", got, want)
		}
	}
	ep.mu.Unlock()
	if st := s.Stats(); st.Sent != 11 || st.Queued != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestRetryWithBackoff(t *testing.T) {
	ep := newEndpoint(t, "127.47.1.2")
	ep.fail = func(n int) int {
		if n <= 3 {
			return []int{503, 429, 500}[n-1]
		}
		return 0
	}
	s, _ := New(Options{URL: ep.srv.URL, BatchSize: 10, FlushInterval: 20 * time.Millisecond,
		MinRetryDelay: 40 * time.Millisecond, MaxRetryDelay: 100 * time.Millisecond, Log: zaptest.NewLogger(t)})
	t1 := time.Now()
	start(t, s)
	for i := range 4 {
		s.Observe(rec(acct.TypeDelivered, i))
	}
	waitFor(t, "delivery after retries", func() bool { return len(ep.events()) == 4 })
	// The endpoint has the events before the sender has read its reply.
	waitFor(t, "sent counted", func() bool { return s.Stats().Sent == 4 })
	// Waits of at least 20, 40 and 50 ms (half of 40, 80 and 100 capped).
	if d := time.Since(t1); d < 100*time.Millisecond {
		t.Errorf("delivered after %v: retries did not back off", d)
	}
	if st := s.Stats(); st.Retries != 3 || st.Sent != 4 {
		t.Errorf("stats %+v, want 3 retries and 4 sent", st)
	}
	ep.mu.Lock()
	if ep.requests != 4 || len(ep.batches) != 1 {
		t.Errorf("%d requests, %d batches accepted", ep.requests, len(ep.batches))
	}
	ep.mu.Unlock()
}

func TestBoundedQueueDropsNewest(t *testing.T) {
	ep := newEndpoint(t, "127.47.1.3")
	var mu sync.Mutex
	down := true
	ep.fail = func(int) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return 503
		}
		return 0
	}
	s, _ := New(Options{URL: ep.srv.URL, BatchSize: 2, MaxQueued: 5, FlushInterval: 10 * time.Millisecond,
		MinRetryDelay: 10 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond, Log: zaptest.NewLogger(t)})
	start(t, s)
	for i := range 50 {
		s.Observe(rec(acct.TypeBounced, i))
	}
	if st := s.Stats(); st.Queued != 5 || st.Dropped != 45 {
		t.Fatalf("stats %+v, want 5 queued and 45 dropped", st)
	}
	waitFor(t, "some retries", func() bool { return s.Stats().Retries >= 2 })
	mu.Lock()
	down = false
	mu.Unlock()
	waitFor(t, "the 5 kept events", func() bool { return len(ep.events()) == 5 })
	for i, ev := range ep.events() {
		if want := fmt.Sprintf("u%d@d1.test", i); ev.Rcpt != want {
			t.Errorf("event %d is %s, want the oldest kept: %s", i, ev.Rcpt, want)
		}
	}
}

func TestPermanentRefusalDropsBatch(t *testing.T) {
	ep := newEndpoint(t, "127.47.1.4")
	ep.fail = func(n int) int {
		if n == 1 {
			return 400
		}
		return 0
	}
	s, _ := New(Options{URL: ep.srv.URL, BatchSize: 2, FlushInterval: 10 * time.Millisecond,
		Events: []string{"bounce"}, Log: zaptest.NewLogger(t)})
	// Both queued before the sender runs, so they travel in one batch
	// whatever the flush timer does.
	s.Observe(rec(acct.TypeBounced, 0))
	s.Observe(rec(acct.TypeBounced, 1))
	start(t, s)
	waitFor(t, "the refused batch", func() bool { return s.Stats().Failed == 2 })
	s.Observe(rec(acct.TypeDelivered, 2)) // not subscribed
	s.Observe(rec(acct.TypeBounced, 3))
	waitFor(t, "the next batch", func() bool { return len(ep.events()) == 1 })
	if ev := ep.events()[0]; ev.Rcpt != "u3@d1.test" {
		t.Errorf("event %+v", ev)
	}
}

func TestShutdownFlushes(t *testing.T) {
	ep := newEndpoint(t, "127.47.1.5")
	s, _ := New(Options{URL: ep.srv.URL, BatchSize: 100, FlushInterval: time.Hour, Log: zaptest.NewLogger(t)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	for i := range 3 {
		s.Observe(rec(acct.TypeDelivered, i))
	}
	cancel()
	<-done
	// Delivery is at least once: a post cut short by the shutdown is sent
	// again by the last flush, so count distinct events.
	ids := map[string]bool{}
	for _, ev := range ep.events() {
		ids[ev.ID] = true
	}
	if len(ids) != 3 {
		t.Errorf("%d distinct events posted at shutdown, want 3", len(ids))
	}
	s.Observe(rec(acct.TypeDelivered, 9)) // after Run: dropped, not held
	if st := s.Stats(); st.Queued != 0 || st.Dropped != 1 {
		t.Errorf("stats after stop %+v", st)
	}
}
