package throttle

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// prefixFor gives each test its own keys on a shared server.
func prefixFor(t *testing.T) string {
	return "t:" + strings.ReplaceAll(t.Name(), " ", "_") + ":"
}

// redisOpener opens a new node (client and backend) on the server per call;
// nodes of one test share its prefix, hence its limits.
func redisOpener(newClient func(t *testing.T) redis.UniversalClient) opener {
	return func(t *testing.T) Backend {
		r := NewRedis(newClient(t), RedisOptions{Prefix: prefixFor(t)})
		t.Cleanup(func() { r.Close() })
		return r
	}
}

func TestRedis(t *testing.T) {
	srv := startRedis(t)
	conformance(t, redisOpener(func(t *testing.T) redis.UniversalClient { return newClient(t, srv.addr()) }))
}

func TestRedisCluster(t *testing.T) {
	addrs := startCluster(t)
	conformance(t, redisOpener(func(t *testing.T) redis.UniversalClient { return newClusterClient(t, addrs) }))
}

// TestRedisKeys: every key of one throttle key carries the same hash tag,
// so each script (and each key's data) stays on one Cluster slot.
func TestRedisKeys(t *testing.T) {
	srv := startRedis(t)
	c := newClient(t, srv.addr())
	r := NewRedis(c, RedisOptions{Prefix: "p{x}:"})
	defer r.Close()
	ctx := t.Context()
	key := "google/vmta1"
	if _, _, err := r.AcquireConn(ctx, key, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	r.AllowN(ctx, key, Rate{N: 1, Per: time.Hour}, 1)
	r.SetState(ctx, key, State{Mode: ModeBackoff, Until: time.Now().Add(time.Hour)})
	r.Counter(ctx, key, 1, time.Hour)
	keys, err := c.Keys(ctx, "*").Result()
	must(t, err, "KEYS")
	if len(keys) != 4 {
		t.Fatalf("keys = %v, want 4", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "p_x_:{google/vmta1}:") {
			t.Errorf("key %q lacks the prefix and hash tag", k)
		}
		ttl, _ := c.PTTL(ctx, k).Result()
		if ttl <= 0 {
			t.Errorf("key %q has no expiry (PTTL %v)", k, ttl)
		}
	}
}

// TestRedisResubscribe: after Redis restarts, a subscription comes back by
// itself, announces that changes may have been missed, and delivers again.
func TestRedisResubscribe(t *testing.T) {
	srv := startRedis(t)
	r := NewRedis(newClient(t, srv.addr()), RedisOptions{})
	defer r.Close()
	ch := r.Subscribe(t.Context())
	srv.restart()
	waitResync(t, ch)
	must(t, r.SetState(t.Context(), "k", State{Mode: ModeBackoff}), "SetState")
	if got := nextChange(t, ch, "k"); got.Mode != ModeBackoff {
		t.Errorf("change after reconnect = %+v", got)
	}
}
