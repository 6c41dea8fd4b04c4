// Package metrics counts what the daemon does, for Prometheus and for the
// web monitor. Message counters and the delivery-latency histogram are fed
// from the accounting records (Observe, an acct.Writer observer); gauges
// (connections, queue depth, spool size, Redis) are read from the
// components when scraped. A per-second ring of the last 15 minutes feeds
// the monitor's charts. Everything lives in one Registry owned by the
// Metrics value: no global state.
package metrics

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-mta/sluice/engine/acct"
)

// Options configure a Metrics.
type Options struct {
	// MaxSites bounds the distinct values of the site label [500]: an ESP
	// sends to many thousands of domains, and each label value is a
	// series. Sites past the bound are counted under OtherSite.
	MaxSites int
	Now      func() time.Time // nil: time.Now
}

// OtherSite is the site label of sites past Options.MaxSites.
const OtherSite = "_other"

// Metrics holds the counters and the registry they are exported from.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	received  *prometheus.CounterVec // vmta, site
	delivered *prometheus.CounterVec // vmta, site
	deferred  *prometheus.CounterVec // vmta, site, category
	bounced   *prometheus.CounterVec // vmta, site, category
	feedback  *prometheus.CounterVec // type
	latency   prometheus.Histogram
	waits     *prometheus.CounterVec // kind

	sitesMu  sync.Mutex
	sites    map[string]bool
	maxSites int

	// Rates is the per-second history the monitor charts.
	Rates *Rates
}

// New returns a Metrics with its own registry, which also carries the Go
// runtime and process collectors.
func New(o Options) *Metrics {
	if o.MaxSites <= 0 {
		o.MaxSites = 500
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Metrics{reg: prometheus.NewRegistry(), now: o.Now, sites: map[string]bool{}, maxSites: o.MaxSites}
	m.received = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_messages_received_total",
		Help: "Recipients accepted for delivery (r records), by requested VMTA and destination domain.",
	}, []string{"vmta", "site"})
	m.delivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_messages_delivered_total",
		Help: "Recipients delivered (d records), by VMTA and site.",
	}, []string{"vmta", "site"})
	m.deferred = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_messages_deferred_total",
		Help: "Delivery attempts deferred (t and tq records), by VMTA, site and bounce category.",
	}, []string{"vmta", "site", "category"})
	m.bounced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_messages_bounced_total",
		Help: "Recipients bounced (b and rb records), by VMTA, site and bounce category.",
	}, []string{"vmta", "site", "category"})
	m.feedback = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_feedback_reports_total",
		Help: "Feedback-loop reports (f records), by feedback type (abuse, unsubscribe …).",
	}, []string{"type"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sluice_delivery_latency_seconds",
		Help:    "Time from injection (timeQueued) to delivery (timeLogged) of delivered recipients.",
		Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
	})
	m.waits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_throttle_waits_total",
		Help: "Times a queue had to wait for a limit: kind=connection (max-smtp-out slot) or rate (max-msg-rate, max-connect-rate).",
	}, []string{"kind"})
	m.reg.MustRegister(m.received, m.delivered, m.deferred, m.bounced, m.feedback, m.latency, m.waits,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.Rates = NewRates(o.Now)
	return m
}

// Registry returns the registry, to register more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Observe counts one accounting record; it fits acct.Writer.Observe. It is
// cheap and safe for concurrent use.
func (m *Metrics) Observe(r *acct.Record) {
	vmta := r.VMTA
	site := m.site(siteOf(r))
	cat := r.BounceCat
	switch r.Type {
	case acct.TypeReceived:
		m.received.WithLabelValues(vmta, site).Inc()
	case acct.TypeDelivered:
		m.delivered.WithLabelValues(vmta, site).Inc()
		if !r.TimeQueued.IsZero() && !r.TimeLogged.IsZero() {
			m.latency.Observe(max(r.TimeLogged.Sub(r.TimeQueued), 0).Seconds())
		}
	case acct.TypeTransient, acct.TypeTransientQueue:
		m.deferred.WithLabelValues(vmta, site, cat).Inc()
	case acct.TypeBounced, acct.TypeRemoteBounce:
		m.bounced.WithLabelValues(vmta, site, cat).Inc()
	case acct.TypeFeedback:
		m.feedback.WithLabelValues(strings.ToLower(r.FeedbackType)).Inc()
	}
	m.Rates.Observe(r)
}

// ThrottleWait counts one wait for a limit of kind "connection" or "rate".
func (m *Metrics) ThrottleWait(kind string) { m.waits.WithLabelValues(kind).Inc() }

// siteOf is the site part of a record's queue ("site/vmta"), or the
// recipient's domain.
func siteOf(r *acct.Record) string {
	if i := strings.LastIndexByte(r.Queue, '/'); i > 0 {
		return r.Queue[:i]
	}
	if i := strings.LastIndexByte(r.Rcpt, '@'); i >= 0 {
		return strings.ToLower(r.Rcpt[i+1:])
	}
	return ""
}

// site returns s, or OtherSite once MaxSites other sites have been seen.
func (m *Metrics) site(s string) string {
	m.sitesMu.Lock()
	defer m.sitesMu.Unlock()
	if m.sites[s] {
		return s
	}
	if len(m.sites) >= m.maxSites {
		return OtherSite
	}
	m.sites[s] = true
	return s
}

// Gauge registers a gauge whose value fn returns at each scrape.
func (m *Metrics) Gauge(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// Counter registers a counter whose running total fn returns at each
// scrape (a total kept by another component).
func (m *Metrics) Counter(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

// GaugeVec registers a gauge with one label whose values fn returns at
// each scrape, one per label value.
func (m *Metrics) GaugeVec(name, help, label string, fn func() map[string]float64) {
	m.reg.MustRegister(&mapCollector{desc: prometheus.NewDesc(name, help, []string{label}, nil), fn: fn})
}

// mapCollector exports fn's map as one gauge per key.
type mapCollector struct {
	desc *prometheus.Desc
	fn   func() map[string]float64
}

func (c *mapCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *mapCollector) Collect(ch chan<- prometheus.Metric) {
	for k, v := range c.fn() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, k)
	}
}
