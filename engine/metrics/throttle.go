package metrics

import (
	"context"
	"time"

	"github.com/sluice-mta/sluice/throttle"
)

// WrapThrottle returns b with every refusal counted in
// sluice_throttle_waits_total: an AcquireConn with all slots held
// (kind="connection") and an AllowN over its rate (kind="rate"). A queue
// waiting for a slot asks again every few tens of milliseconds, so the
// counter measures how often limits held mail back, not wait episodes.
func (m *Metrics) WrapThrottle(b throttle.Backend) throttle.Backend {
	return &countingBackend{Backend: b, m: m}
}

type countingBackend struct {
	throttle.Backend
	m *Metrics
}

func (c *countingBackend) AcquireConn(ctx context.Context, key string, limit int, ttl time.Duration) (throttle.Lease, bool, error) {
	l, ok, err := c.Backend.AcquireConn(ctx, key, limit, ttl)
	if err == nil && !ok {
		c.m.ThrottleWait("connection")
	}
	return l, ok, err
}

func (c *countingBackend) AllowN(ctx context.Context, key string, rate throttle.Rate, n int) (bool, time.Duration, error) {
	ok, wait, err := c.Backend.AllowN(ctx, key, rate, n)
	if err == nil && !ok {
		c.m.ThrottleWait("rate")
	}
	return ok, wait, err
}

// Unwrap returns the wrapped backend.
func (c *countingBackend) Unwrap() throttle.Backend { return c.Backend }
