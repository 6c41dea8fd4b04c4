package spool

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func open(t testing.TB, dir string) *Store {
	t.Helper()
	var log *zap.Logger
	if tt, ok := t.(*testing.T); ok {
		log = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	}
	s, err := Open(dir, log)
	must(t, err, "Open")
	return s
}

// sample returns a message with n recipients whose fields are all non-zero.
func sample(id string, n int) *Message {
	now := time.Unix(1700000000, 123456789)
	m := &Message{ID: id, Env: Envelope{
		From: "bounce+" + id + "@sender.test", EnvID: "env-" + id, Ret: "HDRS",
		SMTPUTF8: true, Body8Bit: true, Received: now, SourceIP: "127.0.0.1",
		AuthUser: "injector", JobID: "job-7", VMTA: "pool-a", BounceDSN: true, RequireTLS: true, Size: 42,
	}}
	for i := range n {
		m.Rcpts = append(m.Rcpts, Rcpt{
			Addr: fmt.Sprintf("user%d@rcpt.test", i), ORcpt: fmt.Sprintf("rfc822;user%d@rcpt.test", i),
			Notify: "FAILURE,DELAY", NextAttempt: now.Add(time.Minute),
		})
	}
	return m
}

func bodyFor(id string) []byte { return []byte("Subject: " + id + "\r\n\r\nhello " + id + "\r\n") }

// scanAll runs Scan and returns the messages by ID, checking the order.
func scanAll(t *testing.T, s *Store) (map[string]*Message, []string) {
	t.Helper()
	got := map[string]*Message{}
	var order []string
	must(t, s.Scan(func(m *Message) error {
		if len(order) > 0 && order[len(order)-1] >= m.ID {
			t.Errorf("Scan order: %s after %s", m.ID, order[len(order)-1])
		}
		order = append(order, m.ID)
		got[m.ID] = m
		return nil
	}), "Scan")
	return got, order
}

func equalMessage(t *testing.T, got, want *Message) {
	t.Helper()
	g, w := *got, *want
	if !g.Env.Received.Equal(w.Env.Received) {
		t.Errorf("%s: Received = %v, want %v", w.ID, g.Env.Received, w.Env.Received)
	}
	g.Env.Received, w.Env.Received = time.Time{}, time.Time{}
	g.Rcpts = append([]Rcpt(nil), g.Rcpts...)
	w.Rcpts = append([]Rcpt(nil), w.Rcpts...)
	for i := range min(len(g.Rcpts), len(w.Rcpts)) {
		for _, p := range [][2]*time.Time{
			{&g.Rcpts[i].FirstAttempt, &w.Rcpts[i].FirstAttempt},
			{&g.Rcpts[i].NextAttempt, &w.Rcpts[i].NextAttempt},
		} {
			if !p[0].Equal(*p[1]) {
				t.Errorf("%s rcpt %d: time %v, want %v", w.ID, i, *p[0], *p[1])
			}
			*p[0], *p[1] = time.Time{}, time.Time{}
		}
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("message differs:\n got %+v\nwant %+v", g, w)
	}
}

func TestPutScanAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	want := map[string]*Message{}
	for i := range 5 {
		m := sample(s.NewID(), i+1)
		must(t, s.Put(context.Background(), m, bodyFor(m.ID)), "Put")
		want[m.ID] = m
	}
	// A message with a zero envelope and times must round-trip too.
	bare := &Message{ID: "bare", Rcpts: []Rcpt{{Addr: "x@y.test"}}}
	must(t, s.Put(context.Background(), bare, nil), "Put bare")
	want[bare.ID] = bare
	if s.Len() != 6 {
		t.Errorf("Len = %d, want 6", s.Len())
	}
	must(t, s.Close(), "Close")

	s = open(t, dir)
	defer s.Close()
	if s.Len() != 0 {
		t.Errorf("Len before Scan = %d, want 0", s.Len())
	}
	got, _ := scanAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("Scan returned %d messages, want %d", len(got), len(want))
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("%s missing after reopen", id)
			continue
		}
		equalMessage(t, g, w)
		b, err := s.Body(id)
		must(t, err, "Body")
		if id != "bare" && string(b) != string(bodyFor(id)) {
			t.Errorf("%s: body %q", id, b)
		}
	}
	if s.Len() != 6 {
		t.Errorf("Len after Scan = %d, want 6", s.Len())
	}
	// Already known now: a second Scan reports nothing.
	if again, _ := scanAll(t, s); len(again) != 0 {
		t.Errorf("second Scan returned %d messages", len(again))
	}
}

func TestUpdate(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	m := sample("m1", 3)
	must(t, s.Put(ctx, m, bodyFor("m1")), "Put")
	other := sample("m2", 1)
	must(t, s.Put(ctx, other, bodyFor("m2")), "Put")

	// Partial: rcpt 0 delivered, rcpt 2 deferred with a new attempt time.
	r0, r2 := m.Rcpts[0], m.Rcpts[2]
	r0.State, r0.Attempts = Delivered, 1
	r2.Attempts, r2.LastReply = 1, "451 4.7.1 try later"
	r2.FirstAttempt = time.Unix(1700000100, 0)
	r2.NextAttempt = time.Unix(1700000700, 0)
	must(t, s.Update("m1", []int{0, 2}, []Rcpt{r0, r2}), "Update partial")
	if _, err := s.Body("m1"); err != nil {
		t.Fatalf("Body after partial update: %v", err)
	}
	must(t, s.Close(), "Close")

	s = open(t, dir)
	got, _ := scanAll(t, s)
	want := sample("m1", 3)
	want.Rcpts[0], want.Rcpts[2] = r0, r2
	if got["m1"] == nil {
		t.Fatal("m1 lost after partial update")
	}
	equalMessage(t, got["m1"], want)

	// Final: the two remaining recipients end, the message is deleted.
	r1 := m.Rcpts[1]
	r1.State = Bounced
	r2.State = Delivered
	must(t, s.Update("m1", []int{1, 2}, []Rcpt{r1, r2}), "Update final")
	if _, err := s.Body("m1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Body after final update: %v, want ErrNotFound", err)
	}
	if err := s.Update("m1", []int{0}, []Rcpt{r0}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update of deleted message: %v, want ErrNotFound", err)
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
	must(t, s.Close(), "Close")

	s = open(t, dir)
	defer s.Close()
	got, _ = scanAll(t, s)
	if len(got) != 1 || got["m2"] == nil {
		t.Errorf("after final update Scan = %v, want only m2", keys(got))
	}
	// Nothing of m1 is left on disk.
	it, err := s.db.NewIter(nil)
	must(t, err, "NewIter")
	for ok := it.First(); ok; ok = it.Next() {
		if id, _, _, _ := parseMetaKey(it.Key()); id == "m1" || string(it.Key()) == "b/m1" {
			t.Errorf("leftover key %q", it.Key())
		}
	}
	must(t, it.Close(), "iter Close")
}

func keys(m map[string]*Message) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestUpdateErrors(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	must(t, s.Put(context.Background(), sample("m1", 2), nil), "Put")
	cases := []struct {
		name  string
		id    string
		idx   []int
		rcpts []Rcpt
		want  error
	}{
		{"unknown id", "nope", []int{0}, []Rcpt{{}}, ErrNotFound},
		{"length mismatch", "m1", []int{0, 1}, []Rcpt{{}}, nil},
		{"index too big", "m1", []int{2}, []Rcpt{{}}, nil},
		{"negative index", "m1", []int{-1}, []Rcpt{{}}, nil},
		{"bad state", "m1", []int{0}, []Rcpt{{State: 9}}, nil},
	}
	for _, c := range cases {
		err := s.Update(c.id, c.idx, c.rcpts)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: Update = %v, want error %v", c.name, err, c.want)
		}
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d after failed updates, want 1", s.Len())
	}
}

func TestPutErrors(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		m    *Message
	}{
		{"empty id", ctx, &Message{Rcpts: []Rcpt{{}}}},
		{"id with slash", ctx, &Message{ID: "a/b", Rcpts: []Rcpt{{}}}},
		{"no recipients", ctx, &Message{ID: "a"}},
		{"none pending", ctx, &Message{ID: "a", Rcpts: []Rcpt{{State: Delivered}}}},
		{"bad state", ctx, &Message{ID: "a", Rcpts: []Rcpt{{}, {State: 7}}}},
		{"cancelled", cancelled, &Message{ID: "a", Rcpts: []Rcpt{{}}}},
	}
	for _, c := range cases {
		if err := s.Put(c.ctx, c.m, nil); err == nil {
			t.Errorf("%s: Put succeeded", c.name)
		}
	}
	must(t, s.Put(ctx, sample("dup", 1), nil), "Put")
	if err := s.Put(ctx, sample("dup", 1), nil); err == nil {
		t.Error("second Put of one id succeeded")
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
	must(t, s.Close(), "Close")
	if err := s.Put(ctx, sample("late", 1), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Body("dup"); !errors.Is(err, ErrClosed) {
		t.Errorf("Body after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

func TestBodyUnknown(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	for _, id := range []string{"unknown", "", "../x"} {
		if b, err := s.Body(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Body(%q) = %q, %v; want ErrNotFound", id, b, err)
		}
	}
}

func TestConcurrentPuts(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	const writers, each = 32, 20
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				m := sample(s.NewID(), 2)
				if err := s.Put(context.Background(), m, bodyFor(m.ID)); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				mu.Lock()
				ids = append(ids, m.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	must(t, s.Close(), "Close")

	s = open(t, dir)
	defer s.Close()
	got, _ := scanAll(t, s)
	if len(got) != writers*each || len(ids) != writers*each {
		t.Fatalf("Scan found %d, acknowledged %d, want %d", len(got), len(ids), writers*each)
	}
	for _, id := range ids {
		if got[id] == nil {
			t.Errorf("%s lost", id)
		}
	}
}

func TestConcurrentUpdatesOneMessage(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	const n = 40
	m := sample("many", n)
	must(t, s.Put(context.Background(), m, nil), "Put")
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := m.Rcpts[i]
			r.Attempts = 1
			must(t, s.Update("many", []int{i}, []Rcpt{r}), "Update deferral")
			r.State = Delivered
			must(t, s.Update("many", []int{i}, []Rcpt{r}), "Update delivered")
		})
	}
	wg.Wait()
	if s.Len() != 0 {
		t.Errorf("Len = %d, want 0", s.Len())
	}
	if _, err := s.Body("many"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Body after all delivered: %v", err)
	}
}

// TestScanDuringTraffic runs Scan while other goroutines Put and finish
// messages; Scan must report exactly the messages spooled before Open.
func TestScanDuringTraffic(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	old := map[string]bool{}
	for range 50 {
		m := sample(s.NewID(), 1)
		must(t, s.Put(context.Background(), m, nil), "Put")
		old[m.ID] = true
	}
	must(t, s.Close(), "Close")

	s = open(t, dir)
	defer s.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := sample(s.NewID(), 1)
				if err := s.Put(context.Background(), m, nil); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				m.Rcpts[0].State = Delivered
				if err := s.Update(m.ID, []int{0}, m.Rcpts); err != nil {
					t.Errorf("Update: %v", err)
					return
				}
			}
		})
	}
	got, _ := scanAll(t, s)
	close(stop)
	wg.Wait()
	if len(got) != len(old) {
		t.Errorf("Scan reported %d messages, want %d", len(got), len(old))
	}
	for id := range got {
		if !old[id] {
			t.Errorf("Scan reported live message %s", id)
		}
	}
	if s.Len() != len(old) {
		t.Errorf("Len = %d, want %d", s.Len(), len(old))
	}
}

func TestScanStopsOnCallbackError(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for _, id := range []string{"a", "b", "c"} {
		must(t, s.Put(context.Background(), sample(id, 1), nil), "Put")
	}
	must(t, s.Close(), "Close")
	s = open(t, dir)
	defer s.Close()
	boom := errors.New("boom")
	var seen []string
	err := s.Scan(func(m *Message) error {
		seen = append(seen, m.ID)
		if m.ID == "b" {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || !reflect.DeepEqual(seen, []string{"a", "b"}) {
		t.Errorf("Scan = %v after %v, want boom after [a b]", err, seen)
	}
}

// TestScanCallbackUpdates checks that fn may call Update, as a queue that
// starts delivering during recovery would.
func TestScanCallbackUpdates(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for _, id := range []string{"a", "b"} {
		must(t, s.Put(context.Background(), sample(id, 1), nil), "Put")
	}
	must(t, s.Close(), "Close")
	s = open(t, dir)
	defer s.Close()
	must(t, s.Scan(func(m *Message) error {
		r := m.Rcpts[0]
		r.State = Delivered
		return s.Update(m.ID, []int{0}, []Rcpt{r})
	}), "Scan")
	if s.Len() != 0 {
		t.Errorf("Len = %d, want 0", s.Len())
	}
}
