package suppress

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"
)

// opener returns a fresh, empty store using clk, closed when the test ends.
type opener func(t *testing.T, clk *clock) Store

// conformance runs the behaviour every Store must have.
func conformance(t *testing.T, open opener) {
	t.Run("Lookup", func(t *testing.T) { testLookup(t, open) })
	t.Run("Normalize", func(t *testing.T) { testNormalizeStore(t, open) })
	t.Run("Expiry", func(t *testing.T) { testExpiry(t, open) })
	t.Run("RemoveAndReplace", func(t *testing.T) { testRemove(t, open) })
	t.Run("List", func(t *testing.T) { testList(t, open) })
	t.Run("Subscribe", func(t *testing.T) { testSubscribe(t, open) })
	t.Run("Invalid", func(t *testing.T) { testInvalid(t, open) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, open) })
}

func testLookup(t *testing.T, open opener) {
	s := open(t, newClock())
	ctx := ctxT(t)
	for _, e := range []Entry{
		{Addr: "g@a.test", Reason: Complaint, Note: "global exact"},
		{Addr: "@dom.test", Reason: HardBounce, Note: "global domain"},
		{Addr: "s@a.test", Scope: "tenant1", Reason: Unsubscribe, Note: "scope exact"},
		{Addr: "@sdom.test", Scope: "tenant1", Reason: Manual, Note: "scope domain"},
		{Addr: "both@dom.test", Scope: "tenant1", Reason: Unsubscribe, Note: "scope exact in global domain"},
		{Addr: "both@sdom.test", Reason: Complaint, Note: "global exact in scope domain"},
	} {
		must(t, s.Add(ctx, e), "add "+e.Addr)
	}
	cases := []struct {
		scope, addr string
		want        string // the Note of the entry found, "" for none
	}{
		{"", "g@a.test", "global exact"},
		{"tenant1", "g@a.test", "global exact"},
		{"other", "g@a.test", "global exact"},
		{"", "s@a.test", ""},
		{"other", "s@a.test", ""},
		{"tenant1", "s@a.test", "scope exact"},
		{"", "anyone@dom.test", "global domain"},
		{"tenant1", "anyone@dom.test", "global domain"},
		{"", "x@sub.dom.test", ""}, // a domain entry does not cover subdomains
		{"tenant1", "x@sdom.test", "scope domain"},
		{"", "x@sdom.test", ""},
		{"tenant1", "both@dom.test", "scope exact in global domain"}, // exact before domain
		{"", "both@dom.test", "global domain"},
		{"tenant1", "both@sdom.test", "global exact in scope domain"}, // global exact before scope domain
		{"", "nobody@a.test", ""},
		{"", "@dom.test", "global domain"},
	}
	for _, c := range cases {
		e, ok, err := s.IsSuppressed(ctx, c.scope, c.addr)
		if err != nil {
			t.Errorf("IsSuppressed(%q, %q): %v", c.scope, c.addr, err)
			continue
		}
		if got := e.Note; ok != (c.want != "") || got != c.want {
			t.Errorf("IsSuppressed(%q, %q) = %q, %v; want %q", c.scope, c.addr, got, ok, c.want)
		}
	}
	e, _, _ := s.IsSuppressed(ctx, "tenant1", "s@a.test")
	if e.Addr != "s@a.test" || e.Scope != "tenant1" || e.Reason != Unsubscribe || e.Added.IsZero() || !e.Expires.IsZero() {
		t.Errorf("entry = %+v", e)
	}
}

func testNormalizeStore(t *testing.T, open opener) {
	clk := newClock()
	s := open(t, clk)
	ctx := ctxT(t)
	must(t, s.Add(ctx, Entry{Addr: " <User.Name@Example.COM.> ", Reason: Complaint}), "add")
	for _, a := range []string{"user.name@example.com", "USER.NAME@EXAMPLE.COM", "<user.name@example.com>", "user.name@example.com."} {
		e, ok, err := s.IsSuppressed(ctx, "", a)
		if err != nil || !ok || e.Addr != "user.name@example.com" {
			t.Errorf("IsSuppressed(%q) = %+v, %v, %v", a, e, ok, err)
		}
		if !e.Added.Equal(clk.Now()) {
			t.Errorf("Added = %v, want the store clock %v", e.Added, clk.Now())
		}
	}
	must(t, s.Remove(ctx, "", "USER.NAME@example.com"), "remove with other case")
}

func testExpiry(t *testing.T, open opener) {
	clk := newClock()
	s := open(t, clk)
	ctx := ctxT(t)
	must(t, s.Add(ctx, Entry{Addr: "tmp@a.test", Reason: HardBounce, Expires: clk.Now().Add(time.Hour)}), "add")
	must(t, s.Add(ctx, Entry{Addr: "@tmp.test", Scope: "t", Reason: HardBounce, Expires: clk.Now().Add(2 * time.Hour)}), "add")
	must(t, s.Add(ctx, Entry{Addr: "keep@a.test", Reason: Manual}), "add")
	check := func(scope, addr string, want bool) {
		t.Helper()
		_, ok, err := s.IsSuppressed(ctx, scope, addr)
		if err != nil || ok != want {
			t.Errorf("IsSuppressed(%q) = %v, %v; want %v", addr, ok, err, want)
		}
	}
	check("", "tmp@a.test", true)
	check("t", "x@tmp.test", true)
	clk.Advance(time.Hour) // expiry is exclusive: at Expires the entry is gone
	check("", "tmp@a.test", false)
	check("t", "x@tmp.test", true)
	if n := count(t, s, AllScopes); n != 2 {
		t.Errorf("List after first expiry: %d entries, want 2", n)
	}
	clk.Advance(time.Hour)
	check("t", "x@tmp.test", false)
	check("", "keep@a.test", true)
	if p, ok := s.(interface {
		Purge(context.Context) (int, error)
	}); ok {
		n, err := p.Purge(ctx)
		if err != nil || n != 2 {
			t.Errorf("Purge = %d, %v; want 2", n, err)
		}
	}
	if n := count(t, s, AllScopes); n != 1 {
		t.Errorf("List after expiry: %d entries, want 1", n)
	}
	// Re-adding an expired address without expiry makes it permanent.
	must(t, s.Add(ctx, Entry{Addr: "tmp@a.test", Reason: Manual}), "re-add")
	clk.Advance(1000 * time.Hour)
	check("", "tmp@a.test", true)
}

func testRemove(t *testing.T, open opener) {
	s := open(t, newClock())
	ctx := ctxT(t)
	if err := s.Remove(ctx, "", "none@a.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove absent = %v, want ErrNotFound", err)
	}
	must(t, s.Add(ctx, Entry{Addr: "r@a.test", Reason: Complaint, Note: "one"}), "add")
	must(t, s.Add(ctx, Entry{Addr: "r@a.test", Scope: "t", Reason: Complaint}), "add scoped")
	must(t, s.Add(ctx, Entry{Addr: "r@a.test", Reason: Manual, Note: "two"}), "replace")
	e, ok, _ := s.IsSuppressed(ctx, "", "r@a.test")
	if !ok || e.Note != "two" || e.Reason != Manual {
		t.Errorf("after replace: %+v, %v", e, ok)
	}
	must(t, s.Remove(ctx, "", "r@a.test"), "remove")
	if _, ok, _ := s.IsSuppressed(ctx, "", "r@a.test"); ok {
		t.Errorf("still suppressed globally after Remove")
	}
	if _, ok, _ := s.IsSuppressed(ctx, "t", "r@a.test"); !ok {
		t.Errorf("Remove of the global entry removed the scoped one")
	}
	if err := s.Remove(ctx, "", "r@a.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
}

func count(t *testing.T, s Store, scope string) int {
	t.Helper()
	n := 0
	must(t, s.List(ctxT(t), scope, func(Entry) error { n++; return nil }), "list")
	return n
}

func testList(t *testing.T, open opener) {
	s := open(t, newClock())
	ctx := ctxT(t)
	for i := range 25 {
		must(t, s.Add(ctx, Entry{Addr: fmt.Sprintf("u%d@a.test", i), Reason: Complaint}), "add")
	}
	for i := range 5 {
		must(t, s.Add(ctx, Entry{Addr: fmt.Sprintf("u%d@a.test", i), Scope: "t1", Reason: Unsubscribe}), "add")
	}
	must(t, s.Add(ctx, Entry{Addr: "@b.test", Scope: "t2", Reason: Manual}), "add")
	for _, c := range []struct {
		scope string
		want  int
	}{{"", 25}, {"t1", 5}, {"t2", 1}, {"none", 0}, {AllScopes, 31}} {
		if n := count(t, s, c.scope); n != c.want {
			t.Errorf("List(%q): %d entries, want %d", c.scope, n, c.want)
		}
	}
	var got []string
	must(t, s.List(ctx, "t1", func(e Entry) error {
		if e.Scope != "t1" || e.Reason != Unsubscribe {
			t.Errorf("List(t1) gave %+v", e)
		}
		got = append(got, e.Addr)
		return nil
	}), "list t1")
	sort.Strings(got)
	if fmt.Sprint(got) != "[u0@a.test u1@a.test u2@a.test u3@a.test u4@a.test]" {
		t.Errorf("List(t1) = %v", got)
	}
	stop := errors.New("stop")
	n := 0
	err := s.List(ctx, AllScopes, func(e Entry) error {
		n++
		if n == 3 {
			return stop
		}
		// fn may call the store.
		_, _, err := s.IsSuppressed(ctx, e.Scope, e.Addr)
		return err
	})
	if err != stop || n != 3 {
		t.Errorf("List stopped with %v after %d calls, want the fn error after 3", err, n)
	}
	if err := s.List(ctx, "bad scope", func(Entry) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("List(bad scope) = %v, want ErrInvalid", err)
	}
}

// recv waits up to 1 s (the bound) for an entry.
func recv(t *testing.T, ch <-chan Entry) Entry {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatalf("subscription closed")
		}
		return e
	case <-time.After(time.Second):
		t.Fatalf("no entry within 1 s")
	}
	return Entry{}
}

func testSubscribe(t *testing.T, open opener) {
	s := open(t, newClock())
	ctx := ctxT(t)
	sctx, cancel := context.WithCancel(ctx)
	a, b := s.Subscribe(sctx), s.Subscribe(ctx)
	must(t, s.Add(ctx, Entry{Addr: "Sub@A.test", Scope: "t", Reason: Complaint, Note: "n"}), "add")
	must(t, s.Add(ctx, Entry{Addr: "@b.test", Reason: HardBounce}), "add")
	for _, ch := range []<-chan Entry{a, b} {
		e := recv(t, ch)
		if e.Addr != "sub@a.test" || e.Scope != "t" || e.Reason != Complaint || e.Note != "n" || e.Added.IsZero() {
			t.Errorf("first entry = %+v", e)
		}
		if e := recv(t, ch); e.Addr != "@b.test" {
			t.Errorf("second entry = %+v", e)
		}
	}
	must(t, s.Remove(ctx, "", "@b.test"), "remove") // removals are not sent
	cancel()
	select {
	case _, ok := <-a:
		if ok {
			t.Errorf("entry after the subscriber's context ended")
		}
	case <-time.After(time.Second):
		t.Errorf("channel not closed when its context ended")
	}
	must(t, s.Add(ctx, Entry{Addr: "c@a.test", Reason: Manual}), "add")
	if e := recv(t, b); e.Addr != "c@a.test" {
		t.Errorf("after removal and cancel: %+v", e)
	}
	s.Close()
	select {
	case _, ok := <-b:
		if ok {
			t.Errorf("entry after Close")
		}
	case <-time.After(time.Second):
		t.Errorf("channel not closed by Close")
	}
	if _, ok := <-s.Subscribe(ctx); ok {
		t.Errorf("Subscribe after Close gave an entry")
	}
}

func testInvalid(t *testing.T, open opener) {
	s := open(t, newClock())
	ctx := ctxT(t)
	for _, e := range []Entry{
		{Addr: "", Reason: Manual},
		{Addr: "nodomain", Reason: Manual},
		{Addr: "a@", Reason: Manual},
		{Addr: "a b@c.test", Reason: Manual},
		{Addr: "a@b..test", Reason: Manual},
		{Addr: "a\x00@b.test", Reason: Manual},
		{Addr: "a@b.test", Reason: "spam"},
		{Addr: "a@b.test", Reason: ""},
		{Addr: "a@b.test", Reason: Manual, Scope: "a{b}"},
		{Addr: "a@b.test", Reason: Manual, Scope: "*"},
		{Addr: "a@b.test", Reason: Manual, Note: string(make([]byte, MaxNoteLen+1))},
	} {
		if err := s.Add(ctx, e); !errors.Is(err, ErrInvalid) {
			t.Errorf("Add(%+q) = %v, want ErrInvalid", e, err)
		}
	}
	if _, _, err := s.IsSuppressed(ctx, "", "garbage"); !errors.Is(err, ErrInvalid) {
		t.Errorf("IsSuppressed(garbage) = %v, want ErrInvalid", err)
	}
	if err := s.Remove(ctx, "x y", "a@b.test"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Remove(bad scope) = %v, want ErrInvalid", err)
	}
	if n := count(t, s, AllScopes); n != 0 {
		t.Errorf("%d entries stored from invalid input", n)
	}
}

func testConcurrent(t *testing.T, open opener) {
	s := open(t, newClock())
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				a := fmt.Sprintf("w%d-%d@c.test", w, i)
				if err := s.Add(ctx, Entry{Addr: a, Reason: Complaint}); err != nil {
					t.Errorf("add: %v", err)
					return
				}
				if _, ok, err := s.IsSuppressed(ctx, "t", a); !ok || err != nil {
					t.Errorf("%s not suppressed right after Add: %v", a, err)
				}
			}
		})
	}
	wg.Wait()
	if n := count(t, s, ""); n != 400 {
		t.Errorf("%d entries, want 400", n)
	}
}

func testClosed(t *testing.T, open opener) {
	s := open(t, newClock())
	ctx := ctxT(t)
	must(t, s.Close(), "close")
	must(t, s.Close(), "second close")
	if err := s.Add(ctx, Entry{Addr: "a@b.test", Reason: Manual}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
}
