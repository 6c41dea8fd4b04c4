package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/throttle"
)

// newThrottle returns the shared-limits backend: Redis (with a local
// fallback while it is unreachable) when [redis] is configured, else an
// in-process one.
func newThrottle(c config.Redis, log *zap.Logger) (throttle.Backend, error) {
	if !c.Enabled() {
		return throttle.NewLocal(), nil
	}
	var client redis.UniversalClient
	if c.URL != "" {
		opt, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		opt.DialerRetries = 1 // fail over fast; the probe reconnects
		opt.DialTimeout = time.Second
		opt.ReadTimeout = time.Second
		opt.WriteTimeout = time.Second
		client = redis.NewClient(opt)
	} else {
		client = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.Nodes, DialerRetries: 1,
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		})
	}
	primary := throttle.NewRedis(client, throttle.RedisOptions{})
	return throttle.NewFailover(primary, throttle.FailoverOptions{ExpectedNodes: max(c.ExpectedNodes, 1), Log: log}), nil
}

// sharedCounters keeps warm-up counts in the throttle backend (Redis when
// configured), so that every node counts against one daily cap. Counts
// are named per day, so they need only outlive it.
type sharedCounters struct{ b throttle.Backend }

const counterTTL = 48 * time.Hour

func (c sharedCounters) AddCounter(name string, delta int64) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.b.Counter(ctx, name, delta, counterTTL)
}

func (c sharedCounters) Counter(name string) (int64, error) { return c.AddCounter(name, 0) }
