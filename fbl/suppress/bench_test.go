package suppress

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// fill adds n addresses and n/10 domains, a tenth of them scoped.
func fill(b *testing.B, s Store, n int) {
	ctx := context.Background()
	for i := range n {
		scope := ""
		if i%10 == 0 {
			scope = "tenant"
		}
		must(b, s.Add(ctx, Entry{Addr: fmt.Sprintf("user%d@d%d.test", i, i%1000), Scope: scope, Reason: Complaint}), "add")
		if i%10 == 0 {
			must(b, s.Add(ctx, Entry{Addr: fmt.Sprintf("@dom%d.test", i), Reason: HardBounce}), "add")
		}
	}
}

func benchLookups(b *testing.B, s Store) {
	ctx := context.Background()
	addrs := make([]string, 1024)
	for i := range addrs {
		if i%2 == 0 {
			addrs[i] = fmt.Sprintf("user%d@d%d.test", i*7, (i*7)%1000) // suppressed
		} else {
			addrs[i] = fmt.Sprintf("Other%d@Example%d.test", i, i) // not, and needs lower-casing
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, _, err := s.IsSuppressed(ctx, "tenant", addrs[i&1023]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkIsSuppressed(b *testing.B) {
	const n = 20000
	b.Run("local", func(b *testing.B) {
		l, err := NewLocal(NewMemKV())
		must(b, err, "NewLocal")
		defer l.Close()
		fill(b, l, n)
		benchLookups(b, l)
	})
	addr := testenv.StartRedis(b)
	b.Run("redis-cached", func(b *testing.B) {
		r := openRedis(b, addr, newPrefix())
		fill(b, r, n)
		benchLookups(b, r)
	})
	b.Run("redis-direct", func(b *testing.B) {
		r := openRedis(b, addr, newPrefix(), WithoutCache())
		fill(b, r, n/10)
		benchLookups(b, r)
	})
}

func BenchmarkAdd(b *testing.B) {
	ctx := context.Background()
	b.Run("local-memkv", func(b *testing.B) {
		l, err := NewLocal(NewMemKV())
		must(b, err, "NewLocal")
		defer l.Close()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			must(b, l.Add(ctx, Entry{Addr: fmt.Sprintf("u%d@a.test", i), Reason: Complaint}), "add")
		}
	})
	addr := testenv.StartRedis(b)
	b.Run("redis", func(b *testing.B) {
		r := openRedis(b, addr, newPrefix())
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			must(b, r.Add(ctx, Entry{Addr: fmt.Sprintf("u%d@a.test", i), Reason: Complaint}), "add")
		}
	})
}
