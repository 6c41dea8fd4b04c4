package throttle

import (
	"testing"
	"time"
)

// benchBackends starts what each backend needs and returns them by name.
func benchBackends(b *testing.B) []struct {
	name string
	be   Backend
} {
	srv := startRedis(b)
	cluster := startCluster(b)
	local := NewLocal()
	single := NewRedis(newClient(b, srv.addr()), RedisOptions{Prefix: "bench:"})
	clustered := NewRedis(newClusterClient(b, cluster), RedisOptions{Prefix: "bench:"})
	failover := NewFailover(NewRedis(newClient(b, srv.addr()), RedisOptions{Prefix: "benchf:"}), FailoverOptions{ExpectedNodes: 2})
	b.Cleanup(func() {
		local.Close()
		single.Close()
		clustered.Close()
		failover.Close()
	})
	return []struct {
		name string
		be   Backend
	}{{"local", local}, {"redis", single}, {"cluster", clustered}, {"failover", failover}}
}

// BenchmarkDecision measures one throttle decision per backend: an AllowN,
// and an AcquireConn with its Release, serially (latency) and from
// GOMAXPROCS goroutines at once (throughput).
func BenchmarkDecision(b *testing.B) {
	rate := Rate{N: 1_000_000_000, Per: time.Second} // always allowed: the cost is the same either way
	for _, bk := range benchBackends(b) {
		b.Run("AllowN/"+bk.name, func(b *testing.B) {
			ctx := b.Context()
			for b.Loop() {
				if _, _, err := bk.be.AllowN(ctx, "allow", rate, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("AllowN-parallel/"+bk.name, func(b *testing.B) {
			ctx := b.Context()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := bk.be.AllowN(ctx, "allowp", rate, 1); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run("AcquireRelease/"+bk.name, func(b *testing.B) {
			ctx := b.Context()
			for b.Loop() {
				l, ok, err := bk.be.AcquireConn(ctx, "conn", 1000, time.Minute)
				if err != nil || !ok {
					b.Fatal(ok, err)
				}
				if err := l.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("AcquireRelease-parallel/"+bk.name, func(b *testing.B) {
			ctx := b.Context()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l, ok, err := bk.be.AcquireConn(ctx, "connp", 1000, time.Minute)
					if err != nil || !ok {
						b.Error(ok, err)
						return
					}
					if err := l.Release(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
