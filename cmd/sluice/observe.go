package main

import (
	"context"
	"io/fs"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/admin"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/metrics"
	"github.com/sluice-mta/sluice/engine/monitor"
	"github.com/sluice-mta/sluice/engine/queue"
	"github.com/sluice-mta/sluice/engine/webhook"
	"github.com/sluice-mta/sluice/throttle"
)

// observability wires what watches the daemon: Prometheus metrics and the
// web monitor on the admin listener, and the event webhook. Everything it
// counts arrives through the acct observer, plus gauges read at scrape time.
type observability struct {
	m    *metrics.Metrics
	log  *zap.Logger
	stop context.CancelFunc
	done chan struct{}

	// A queue listing walks all waiting mail: one walk serves the gauges
	// of one scrape.
	qmu     sync.Mutex
	qAt     time.Time
	qCached []queue.QueueStatus
}

// maxDepthSites bounds the site label of sluice_queue_depth; the rest is
// summed under metrics.OtherSite.
const maxDepthSites = 200

// startObservability creates the metrics, feeds them (and the webhook, when
// [webhook] url is set) from every acct record, and mounts GET /metrics and
// the web monitor on adm when the admin API is configured. Close stops the
// webhook after a last flush.
func startObservability(cfg *config.Config, aw *acct.Writer, adm *admin.Server, log *zap.Logger) (*observability, error) {
	o := &observability{m: metrics.New(metrics.Options{}), log: log, done: make(chan struct{})}
	aw.Observe(o.m.Observe)
	ctx, stop := context.WithCancel(context.Background())
	o.stop = stop
	if w := cfg.Webhook; w.Enabled() {
		hook, err := webhook.New(webhook.Options{URL: w.URL, BatchSize: w.BatchSize, FlushInterval: w.FlushInterval.D(),
			MaxQueued: w.MaxQueued, Timeout: w.Timeout.D(), MaxRetryDelay: w.MaxRetryDelay.D(), Events: w.Events,
			Secret: w.Secret, Log: log.Named("webhook")})
		if err != nil {
			stop()
			return nil, err
		}
		aw.Observe(hook.Observe)
		o.webhookMetrics(hook)
		go func() { defer close(o.done); hook.Run(ctx) }()
		log.Info("event webhook enabled", zap.Int("batch_size", w.BatchSize), zap.Duration("flush_interval", w.FlushInterval.D()))
	} else {
		close(o.done)
	}
	if adm != nil {
		if cfg.Admin.MetricsPublic {
			adm.HandlePublic("GET /metrics", o.m.Handler())
		} else {
			adm.Handle("GET /metrics", o.m.Handler())
		}
		monitor.Mount(adm, monitor.Options{Rates: o.m.Rates, CookieName: admin.CookieName})
	}
	o.m.Gauge("sluice_spool_bytes", "Bytes on disk under spool-dir (refreshed at most every 10 s).", cachedFloat(10*time.Second, func() float64 {
		return float64(dirSize(cfg.SpoolDir))
	}))
	return o, nil
}

func (o *observability) webhookMetrics(h *webhook.Sender) {
	o.m.Gauge("sluice_webhook_queued_events", "Webhook events waiting to be posted.", func() float64 { return float64(h.Stats().Queued) })
	o.m.Counter("sluice_webhook_sent_events_total", "Webhook events the endpoint accepted.", func() float64 { return float64(h.Stats().Sent) })
	o.m.Counter("sluice_webhook_dropped_events_total", "Webhook events dropped: max-queued reached, or not sent at shutdown.", func() float64 { return float64(h.Stats().Dropped) })
	o.m.Counter("sluice_webhook_failed_events_total", "Webhook events in batches the endpoint refused for good (4xx).", func() float64 { return float64(h.Stats().Failed) })
	o.m.Counter("sluice_webhook_retries_total", "Webhook POSTs that failed and were retried.", func() float64 { return float64(h.Stats().Retries) })
}

// wrapThrottle counts throttle waits, and exports Redis up or down when
// [redis] is configured (b is then a failover backend).
func (o *observability) wrapThrottle(cfg *config.Config, b throttle.Backend) throttle.Backend {
	if d, ok := b.(interface{ Degraded() bool }); ok && cfg.Redis.Enabled() {
		o.m.Gauge("sluice_redis_up", "1 while Redis answers, 0 while this node runs on its local share of the limits.", func() float64 {
			if d.Degraded() {
				return 0
			}
			return 1
		})
	}
	return o.m.WrapThrottle(b)
}

// attach registers the gauges read from the scheduler and the listener.
func (o *observability) attach(sch interface{ Queues() []queue.QueueStatus }, in interface{ Sessions() int }) {
	queues := func() []queue.QueueStatus {
		o.qmu.Lock()
		defer o.qmu.Unlock()
		if time.Since(o.qAt) > 2*time.Second {
			o.qCached, o.qAt = sch.Queues(), time.Now()
		}
		return o.qCached
	}
	o.m.Gauge("sluice_connections_in", "Injection sessions open now.", func() float64 { return float64(in.Sessions()) })
	o.m.Gauge("sluice_connections_out", "Outbound delivery connections open or opening now.", func() float64 {
		n := 0
		for _, q := range queues() {
			n += q.Connections
		}
		return float64(n)
	})
	o.m.Gauge("sluice_queued_recipients", "Recipients waiting in all queues (ready, deferred and paused).", func() float64 {
		n := 0
		for _, q := range queues() {
			n += q.Queued
		}
		return float64(n)
	})
	o.m.GaugeVec("sluice_queue_depth", "Recipients waiting per site (all its VMTAs), the largest sites first; the rest under _other.", "site", func() map[string]float64 {
		by := map[string]float64{}
		for _, q := range queues() {
			by[q.Site] += float64(q.Queued)
		}
		return capSites(by, maxDepthSites)
	})
}

// Close stops the webhook after its last flush.
func (o *observability) Close() {
	o.stop()
	<-o.done
}

// capSites keeps the n largest entries of by and sums the others under
// metrics.OtherSite.
func capSites(by map[string]float64, n int) map[string]float64 {
	if len(by) <= n {
		return by
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return by[keys[i]] > by[keys[j]] })
	out := make(map[string]float64, n+1)
	for i, k := range keys {
		if i < n {
			out[k] = by[k]
		} else {
			out[metrics.OtherSite] += by[k]
		}
	}
	return out
}

// cachedFloat calls fn at most once per ttl.
func cachedFloat(ttl time.Duration, fn func() float64) func() float64 {
	var mu sync.Mutex
	var at time.Time
	var v float64
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		if at.IsZero() || time.Since(at) > ttl {
			v, at = fn(), time.Now()
		}
		return v
	}
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed by a compaction meanwhile
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
