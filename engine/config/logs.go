package config

import (
	"fmt"
	"net/url"
	"time"
)

// AcctFile configures rotation and retention of the accounting files
// (PowerMTA's <acct-file> move-interval, max-size and delete-after). The
// current file is always log-dir/acct-YYYY-MM-DD.csv; a file moved aside
// before its day ends becomes acct-YYYY-MM-DD-HHMMSS.mmm.csv (the time of
// the move), so every file still matches acct-*.csv and sorts in order.
type AcctFile struct {
	MaxSize      Size     `toml:"max-size"`      // [0 = none] move the file aside once it reaches this size
	MoveInterval Duration `toml:"move-interval"` // [0 = daily only] also move it every interval, aligned to UTC
	DeleteAfter  Duration `toml:"delete-after"`  // [0 = keep forever] delete acct files not written for this long
}

// Webhook configures the optional event webhook: delivery, bounce,
// complaint and unsubscribe events POSTed as JSON batches. Without a url
// no webhook runs.
type Webhook struct {
	URL           string   `toml:"url"`             // http:// or https:// endpoint; "" disables the webhook
	BatchSize     int      `toml:"batch-size"`      // [100] events per POST at most
	FlushInterval Duration `toml:"flush-interval"`  // [5s] longest an event waits for a batch to fill
	MaxQueued     int      `toml:"max-queued"`      // [10000] events held in memory; beyond it new events are dropped and counted
	Timeout       Duration `toml:"timeout"`         // [10s] per POST
	MaxRetryDelay Duration `toml:"max-retry-delay"` // [5m] cap of the exponential backoff between retries
	Events        []string `toml:"events"`          // [all] of "delivery", "bounce", "complaint", "unsubscribe"
	Secret        string   `toml:"secret"`          // when set, each POST carries X-Sluice-Signature: sha256=HMAC(secret, body)
}

// Enabled reports whether the webhook runs.
func (w *Webhook) Enabled() bool { return w.URL != "" }

// WebhookEvents are the event names a webhook may subscribe to.
var WebhookEvents = []string{"delivery", "bounce", "complaint", "unsubscribe"}

// Defaults of [webhook].
const (
	defaultWebhookBatch     = 100
	defaultWebhookFlush     = Duration(5 * time.Second)
	defaultWebhookQueued    = 10000
	defaultWebhookTimeout   = Duration(10 * time.Second)
	defaultWebhookRetryCap  = Duration(5 * time.Minute)
	minAcctMoveInterval     = Duration(time.Minute)
	minAcctMaxSize          = Size(64 << 10)
	maxWebhookBatch         = 10000
	maxWebhookQueuedAllowed = 10_000_000
)

// validateLogs fills the defaults of [acct-file] and [webhook] and checks
// them.
func (c *Config) validateLogs(p *problems) {
	a := &c.AcctFile
	if a.MaxSize < 0 {
		p.add("acct-file.max-size", "must not be negative")
	} else if a.MaxSize > 0 && a.MaxSize < minAcctMaxSize {
		p.add("acct-file.max-size", "%s is below the minimum of %s", a.MaxSize, minAcctMaxSize)
	}
	if a.MoveInterval < 0 {
		p.add("acct-file.move-interval", "must not be negative")
	} else if a.MoveInterval > 0 && a.MoveInterval < minAcctMoveInterval {
		p.add("acct-file.move-interval", "%s is below the minimum of %s", a.MoveInterval, minAcctMoveInterval)
	}
	if a.DeleteAfter < 0 {
		p.add("acct-file.delete-after", "must not be negative")
	} else if a.DeleteAfter > 0 && a.DeleteAfter < Duration(time.Hour) {
		p.add("acct-file.delete-after", "%s is below the minimum of 1h", a.DeleteAfter)
	}

	w := &c.Webhook
	if w.BatchSize == 0 {
		w.BatchSize = defaultWebhookBatch
	}
	if w.FlushInterval == 0 {
		w.FlushInterval = defaultWebhookFlush
	}
	if w.MaxQueued == 0 {
		w.MaxQueued = defaultWebhookQueued
	}
	if w.Timeout == 0 {
		w.Timeout = defaultWebhookTimeout
	}
	if w.MaxRetryDelay == 0 {
		w.MaxRetryDelay = defaultWebhookRetryCap
	}
	if w.URL != "" {
		u, err := url.Parse(w.URL)
		switch {
		case err != nil:
			p.add("webhook.url", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			p.add("webhook.url", "%q must be an http:// or https:// URL", w.URL)
		case u.Host == "":
			p.add("webhook.url", "%q has no host", w.URL)
		}
	}
	if w.BatchSize < 0 || w.BatchSize > maxWebhookBatch {
		p.add("webhook.batch-size", "must be between 1 and %d", maxWebhookBatch)
	}
	if w.FlushInterval < 0 {
		p.add("webhook.flush-interval", "must not be negative")
	}
	if w.MaxQueued < 0 || w.MaxQueued > maxWebhookQueuedAllowed {
		p.add("webhook.max-queued", "must be between 1 and %d", maxWebhookQueuedAllowed)
	} else if w.MaxQueued < w.BatchSize {
		p.add("webhook.max-queued", "%d is less than batch-size %d", w.MaxQueued, w.BatchSize)
	}
	if w.Timeout < 0 {
		p.add("webhook.timeout", "must not be negative")
	}
	if w.MaxRetryDelay < 0 {
		p.add("webhook.max-retry-delay", "must not be negative")
	}
	for i, e := range w.Events {
		found := false
		for _, k := range WebhookEvents {
			found = found || e == k
		}
		if !found {
			p.add(fmt.Sprintf("webhook.events[%d]", i), "%q is not one of delivery, bounce, complaint, unsubscribe", e)
		}
	}
}
