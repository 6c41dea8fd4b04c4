package suppress

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sluice-mta/sluice/engine/testenv"
	"go.uber.org/zap/zaptest"
)

var prefixes atomic.Int64

// newPrefix returns a key prefix no other test uses.
func newPrefix() string { return fmt.Sprintf("sup%d", prefixes.Add(1)) }

func newClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: 1})
	t.Cleanup(func() { c.Close() })
	return c
}

func openRedis(t testing.TB, addr, prefix string, opts ...Option) *Redis {
	s, err := NewRedis(newClient(t, addr), prefix, zaptest.NewLogger(t), opts...)
	must(t, err, "NewRedis")
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRedis(t *testing.T) {
	addr := testenv.StartRedis(t)
	conformance(t, func(t *testing.T, clk *clock) Store {
		return openRedis(t, addr, newPrefix(), WithClock(clk.Now))
	})
}

func TestRedisWithoutCache(t *testing.T) {
	addr := testenv.StartRedis(t)
	conformance(t, func(t *testing.T, clk *clock) Store {
		return openRedis(t, addr, newPrefix(), WithClock(clk.Now), WithoutCache())
	})
}

// TestRedisTwoNodes: two stores sharing one Redis see each other's adds and
// removes within 1 s, in lookups and in Subscribe.
func TestRedisTwoNodes(t *testing.T) {
	addr := testenv.StartRedis(t)
	for _, mode := range []string{"cache", "nocache"} {
		t.Run(mode, func(t *testing.T) {
			var opts []Option
			if mode == "nocache" {
				opts = append(opts, WithoutCache())
			}
			p := newPrefix()
			a, b := openRedis(t, addr, p, opts...), openRedis(t, addr, p, opts...)
			ctx := ctxT(t)
			subB := b.Subscribe(ctx)
			start := time.Now()
			must(t, a.Add(ctx, Entry{Addr: "x@a.test", Scope: "t", Reason: Complaint}), "add on a")
			if e := recv(t, subB); e.Addr != "x@a.test" || e.Scope != "t" {
				t.Errorf("b's subscription got %+v", e)
			}
			waitFor(t, "b sees the add", func() bool {
				_, ok, err := b.IsSuppressed(ctx, "t", "x@a.test")
				return ok && err == nil
			})
			t.Logf("add on a seen by b after %v", time.Since(start))
			must(t, b.Remove(ctx, "t", "x@a.test"), "remove on b")
			waitFor(t, "a sees the remove", func() bool {
				_, ok, err := a.IsSuppressed(ctx, "t", "x@a.test")
				return !ok && err == nil
			})
			// A node opened later loads what is already there.
			must(t, a.Add(ctx, Entry{Addr: "@late.test", Reason: HardBounce}), "add")
			c := openRedis(t, addr, p, opts...)
			if _, ok, err := c.IsSuppressed(ctx, "t", "who@late.test"); !ok || err != nil {
				t.Errorf("new node: %v, %v", ok, err)
			}
			if mode == "cache" && !c.Live() {
				t.Errorf("new node's cache not live after NewRedis")
			}
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 1 s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestRedisReconnect: when a node's subscription is cut, events published
// meanwhile are lost; on resubscribing it reloads, and its subscribers get
// the entries they missed.
func TestRedisReconnect(t *testing.T) {
	addr := testenv.StartRedis(t)
	p := newPrefix()
	ctx := ctxT(t)
	s := openRedis(t, addr, p)
	sub := s.Subscribe(ctx)
	admin := newClient(t, addr)
	must(t, admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(), "kill pubsub")
	// An entry written with no event, as if its event were lost.
	rec := encodeRecord(Entry{Reason: Complaint, Added: time.Now()})
	must(t, admin.HSet(ctx, p+":{g}:h", "lost@a.test", rec).Err(), "hset")
	select {
	case e := <-sub:
		if e.Addr != "lost@a.test" {
			t.Errorf("after reconnect got %+v", e)
		}
	case <-time.After(5 * time.Second): // go-redis notices and resubscribes within its health check
		t.Fatalf("lost entry not delivered after the reconnection")
	}
	waitFor(t, "live again", s.Live)
	if _, ok, _ := s.IsSuppressed(ctx, "", "lost@a.test"); !ok {
		t.Errorf("lost entry not in the reloaded cache")
	}
}

// TestRedisOutage: with Redis gone, the cache keeps answering and writes
// fail with an error.
func TestRedisOutage(t *testing.T) {
	addr := testenv.StartRedis(t)
	ctx := ctxT(t)
	s := openRedis(t, addr, newPrefix())
	must(t, s.Add(ctx, Entry{Addr: "o@a.test", Reason: Complaint}), "add")
	nc := openRedis(t, addr, newPrefix(), WithoutCache())
	admin := newClient(t, addr)
	admin.Do(ctx, "SHUTDOWN", "NOSAVE") // the connection drops: no reply
	time.Sleep(50 * time.Millisecond)
	if _, ok, err := s.IsSuppressed(ctx, "", "o@a.test"); !ok || err != nil {
		t.Errorf("lookup during the outage = %v, %v; want the cached entry", ok, err)
	}
	actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := s.Add(actx, Entry{Addr: "p@a.test", Reason: Complaint}); err == nil {
		t.Errorf("Add succeeded with Redis down")
	}
	if _, _, err := nc.IsSuppressed(ctx, "", "o@a.test"); err == nil {
		t.Errorf("uncached lookup succeeded with Redis down")
	}
}

// TestRedisDownAtStart: NewRedis does not fail or wait long when Redis is
// unreachable, and lookups report the error instead of a false "no".
func TestRedisDownAtStart(t *testing.T) {
	addr := testenv.FreeAddr(t, "127.0.0.1") // nothing listens there
	start := time.Now()
	s := openRedis(t, addr, newPrefix())
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("NewRedis took %v with Redis down", d)
	}
	if _, _, err := s.IsSuppressed(ctxT(t), "", "a@b.test"); err == nil {
		t.Errorf("lookup succeeded with no Redis and no cache")
	}
}

func TestRedisKeys(t *testing.T) {
	addr := testenv.StartRedis(t)
	ctx := ctxT(t)
	p := newPrefix()
	s := openRedis(t, addr, p)
	clk := time.Now()
	must(t, s.Add(ctx, Entry{Addr: "k@a.test", Scope: "tenant", Reason: Complaint, Expires: clk.Add(time.Hour)}), "add")
	must(t, s.Add(ctx, Entry{Addr: "g@a.test", Reason: Manual}), "add")
	admin := newClient(t, addr)
	keys, err := admin.Keys(ctx, p+":*").Result()
	must(t, err, "keys")
	got := strings.Join(sortStrings(keys), " ")
	want := p + ":scopes " + p + ":{g}:h " + p + ":{s=tenant}:h " + p + ":{s=tenant}:x"
	if got != want {
		t.Errorf("keys = %s\nwant   %s", got, want)
	}
	score, err := admin.ZScore(ctx, p+":{s=tenant}:x", "k@a.test").Result()
	if err != nil || int64(score) != clk.Add(time.Hour).UnixMilli() {
		t.Errorf("expiry score = %v, %v", score, err)
	}
	for _, bad := range []string{"", "a{b", "a b", strings.Repeat("p", 65)} {
		if _, err := NewRedis(admin, bad, nil); err == nil {
			t.Errorf("NewRedis accepted prefix %q", bad)
		}
	}
	// A malformed event is ignored and does not stop the subscription.
	sub := s.Subscribe(ctx)
	must(t, admin.Publish(ctx, p+":events", `{"o":"a","k":"NOT NORMAL@x"}`).Err(), "publish")
	must(t, admin.Publish(ctx, p+":events", "garbage").Err(), "publish")
	must(t, s.Add(ctx, Entry{Addr: "after@a.test", Reason: Manual}), "add")
	if e := recv(t, sub); e.Addr != "after@a.test" {
		t.Errorf("got %+v", e)
	}
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// TestRedisLoadWhileWriting: a node that loads while another writes ends up
// with exactly what Redis holds (events received during the load are
// applied on top of it, in order).
func TestRedisLoadWhileWriting(t *testing.T) {
	addr := testenv.StartRedis(t)
	ctx := ctxT(t)
	p := newPrefix()
	admin := newClient(t, addr)
	pipe := admin.Pipeline()
	rec := encodeRecord(Entry{Reason: Complaint, Added: time.Now()})
	for i := range 20000 {
		pipe.HSet(ctx, p+":{g}:h", fmt.Sprintf("pre%d@a.test", i), rec)
	}
	_, err := pipe.Exec(ctx)
	must(t, err, "prefill")
	a := openRedis(t, addr, p)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 300 {
			a.Add(ctx, Entry{Addr: fmt.Sprintf("new%d@a.test", i), Reason: Manual})
			a.Remove(ctx, "", fmt.Sprintf("pre%d@a.test", i))
		}
	}()
	b := openRedis(t, addr, p)
	<-done
	waitFor(t, "b live", b.Live)
	want := map[string]bool{}
	must(t, a.List(ctx, "", func(e Entry) error { want[e.Addr] = true; return nil }), "list")
	waitFor(t, "b converges", func() bool {
		b.mu.RLock()
		defer b.mu.RUnlock()
		return len(b.idx[""]) == len(want)
	})
	b.mu.RLock()
	defer b.mu.RUnlock()
	for addr := range want {
		if _, ok := b.idx[""][addr]; !ok {
			t.Errorf("%s missing from b's copy", addr)
		}
	}
}
