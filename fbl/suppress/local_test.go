package suppress

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func openLocal(t *testing.T, clk *clock) Store {
	s, err := NewLocal(NewMemKV(), WithClock(clk.Now), WithLogger(zaptest.NewLogger(t)))
	must(t, err, "NewLocal")
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLocal(t *testing.T) { conformance(t, openLocal) }

func TestLocalPersists(t *testing.T) {
	ctx := ctxT(t)
	clk := newClock()
	kv := NewMemKV()
	l, err := NewLocal(kv, WithClock(clk.Now))
	must(t, err, "NewLocal")
	must(t, l.Add(ctx, Entry{Addr: "p@a.test", Scope: "t", Reason: Complaint, Note: "kept", Expires: clk.Now().Add(48 * time.Hour)}), "add")
	must(t, l.Add(ctx, Entry{Addr: "gone@a.test", Reason: HardBounce, Expires: clk.Now().Add(time.Hour)}), "add")
	must(t, l.Add(ctx, Entry{Addr: "removed@a.test", Reason: HardBounce}), "add")
	must(t, l.Remove(ctx, "", "removed@a.test"), "remove")
	l.Close()
	kv.Set(kvPrefix+"garbage", []byte("x"))              // a key without separator
	kv.Set(kvKey("", "bad@a.test"), []byte("{not json")) // an unreadable record
	kv.Set("other/key", []byte("not ours"))

	clk.Advance(2 * time.Hour)
	l, err = NewLocal(kv, WithClock(clk.Now))
	must(t, err, "reopen")
	defer l.Close()
	e, ok, err := l.IsSuppressed(ctx, "t", "p@a.test")
	if !ok || err != nil || e.Note != "kept" || e.Reason != Complaint || !e.Expires.Equal(clk.Now().Add(46*time.Hour)) {
		t.Errorf("after reopen: %+v, %v, %v", e, ok, err)
	}
	if l.Len() != 1 {
		t.Errorf("Len = %d, want 1", l.Len())
	}
	if v, _ := kv.Get(kvKey("", "gone@a.test")); v != nil {
		t.Errorf("expired entry not deleted from the KV at load")
	}
	if v, _ := kv.Get(kvKey("", "removed@a.test")); v != nil {
		t.Errorf("removed entry still in the KV")
	}
}

// failKV fails every write, as a full disk would.
type failKV struct{ *MemKV }

func (failKV) Set(string, []byte) error { return errors.New("disk full") }
func (failKV) Delete(string) error      { return errors.New("disk full") }

func TestLocalWriteFailure(t *testing.T) {
	ctx := context.Background()
	mem := NewMemKV()
	l, err := NewLocal(failKV{mem})
	must(t, err, "NewLocal")
	defer l.Close()
	if err := l.Add(ctx, Entry{Addr: "a@b.test", Reason: Manual}); err == nil {
		t.Fatalf("Add succeeded on a failing KV")
	}
	if _, ok, _ := l.IsSuppressed(ctx, "", "a@b.test"); ok {
		t.Errorf("entry in memory although it was not stored")
	}
}

func TestLocalBackgroundPurge(t *testing.T) {
	clk := newClock()
	kv := NewMemKV()
	l, err := NewLocal(kv, WithClock(clk.Now), WithPurgeInterval(10*time.Millisecond))
	must(t, err, "NewLocal")
	defer l.Close()
	must(t, l.Add(context.Background(), Entry{Addr: "a@b.test", Reason: Manual, Expires: clk.Now().Add(time.Minute)}), "add")
	clk.Advance(time.Minute)
	deadline := time.Now().Add(2 * time.Second)
	for kv.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("expired entry not purged in the background")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a@b.test", "a@b.test"},
		{"A@B.Test", "a@b.test"},
		{"<a@b.test>", "a@b.test"},
		{"  a@b.test. ", "a@b.test"},
		{"@B.test", "@b.test"},
		{`"x@y"@b.test`, `"x@y"@b.test`},
		{"ü@bücher.test", "ü@bücher.test"},
		{"", ""},
		{"a", ""},
		{"a@", ""},
		{"a@.", ""},
		{"a@.b.test", ""},
		{"a@b..test", ""},
		{"a b@c.test", ""},
		{"a\r\n@b.test", ""},
		{string(make([]byte, 65)) + "@b.test", ""},
	}
	for _, c := range cases {
		got, err := Normalize(c.in)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("Normalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%q) error %v is not ErrInvalid", c.in, err)
		}
	}
}

func TestReasonValid(t *testing.T) {
	for _, c := range []struct {
		r    Reason
		want bool
	}{{Complaint, true}, {HardBounce, true}, {Unsubscribe, true}, {Manual, true}, {"", false}, {"Complaint", false}, {"soft-bounce", false}} {
		if c.r.Valid() != c.want {
			t.Errorf("Reason(%q).Valid() = %v", c.r, !c.want)
		}
	}
}
