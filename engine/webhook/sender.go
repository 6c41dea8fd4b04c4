package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
)

// Options configure a Sender; zero values take the defaults in brackets.
type Options struct {
	URL           string        // the endpoint; required
	BatchSize     int           // [100] events per POST at most
	FlushInterval time.Duration // [5s] longest the first queued event waits for a batch to fill
	MaxQueued     int           // [10000] events held; newer ones are dropped while full
	Timeout       time.Duration // [10s] per POST
	MinRetryDelay time.Duration // [1s] first wait after a failed POST; doubles each failure
	MaxRetryDelay time.Duration // [5m] cap of the wait
	Events        []string      // event names to send; empty: all
	Secret        string        // when set, X-Sluice-Signature: sha256=<hex HMAC-SHA256(secret, body)>
	Client        *http.Client  // nil: a client with Timeout
	Log           *zap.Logger
}

// SignatureHeader carries the body's HMAC when Options.Secret is set.
const SignatureHeader = "X-Sluice-Signature"

// Stats are a Sender's running totals.
type Stats struct {
	Queued  int    // events waiting now
	Sent    uint64 // events the endpoint accepted (2xx)
	Dropped uint64 // events dropped because MaxQueued were waiting
	Failed  uint64 // events dropped because the endpoint refused their batch for good (4xx)
	Retries uint64 // failed POSTs that were retried
}

// Sender queues events and posts them in batches. Observe never blocks on
// the network; Run does the posting.
type Sender struct {
	o    Options
	log  *zap.Logger
	run  string // this process run's id prefix
	keep map[string]bool

	mu      sync.Mutex
	queue   []Event // oldest first; len ≤ MaxQueued
	first   time.Time
	seq     uint64
	stats   Stats
	wake    chan struct{} // a batch is full
	stopped bool
}

// New checks o and returns a Sender; call Run to start posting.
func New(o Options) (*Sender, error) {
	if o.URL == "" {
		return nil, errors.New("webhook: no url")
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 5 * time.Second
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = 10000
	}
	o.MaxQueued = max(o.MaxQueued, o.BatchSize)
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MinRetryDelay <= 0 {
		o.MinRetryDelay = time.Second
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = 5 * time.Minute
	}
	o.MaxRetryDelay = max(o.MaxRetryDelay, o.MinRetryDelay)
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	var id [6]byte
	rand.Read(id[:])
	s := &Sender{o: o, log: o.Log, run: hex.EncodeToString(id[:]), wake: make(chan struct{}, 1)}
	if len(o.Events) > 0 {
		s.keep = map[string]bool{}
		for _, e := range o.Events {
			s.keep[e] = true
		}
	}
	return s, nil
}

// Observe queues the event of r, if r is one the webhook sends; it fits
// acct.Writer.Observe. When MaxQueued events wait already, the event is
// dropped and counted.
func (s *Sender) Observe(r *acct.Record) {
	name := EventOf(r)
	if name == "" || (s.keep != nil && !s.keep[name]) {
		return
	}
	ev := fromRecord(name, r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || len(s.queue) >= s.o.MaxQueued {
		s.stats.Dropped++
		return
	}
	s.seq++
	ev.ID = s.run + "-" + strconv.FormatUint(s.seq, 10)
	if len(s.queue) == 0 {
		s.first = time.Now()
	}
	s.queue = append(s.queue, ev)
	if len(s.queue) == 1 || len(s.queue) >= s.o.BatchSize { // Run re-reads when to post
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Stats returns the running totals.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Queued = len(s.queue)
	return st
}

// Run posts batches until ctx ends: a batch leaves when BatchSize events
// wait or the oldest has waited FlushInterval. A failed POST is retried
// after an exponential, jittered delay; the batch stays queued meanwhile.
// When ctx ends, Run makes one last attempt, within Timeout, to post what
// is queued, then returns. It starts no goroutine.
func (s *Sender) Run(ctx context.Context) error {
	failures := 0
	for {
		wait := s.o.FlushInterval
		s.mu.Lock()
		n := len(s.queue)
		if n > 0 {
			wait = s.o.FlushInterval - time.Since(s.first)
		}
		s.mu.Unlock()
		if failures > 0 {
			wait = s.backoff(failures)
		} else if n >= s.o.BatchSize {
			wait = 0
		}
		if wait > 0 {
			wake := s.wake
			if failures > 0 {
				wake = nil // a full batch does not cut a backoff short
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-wake:
			case <-t.C:
			}
			t.Stop()
		}
		if ctx.Err() != nil {
			s.drain()
			return nil
		}
		if s.flushOne(ctx) {
			failures = 0
		} else {
			failures++
		}
	}
}

// backoff is the wait after the n-th failure in a row: MinRetryDelay·2ⁿ⁻¹,
// capped, between 50% and 100% of that.
func (s *Sender) backoff(n int) time.Duration {
	d := s.o.MinRetryDelay
	for i := 1; i < n && d < s.o.MaxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, s.o.MaxRetryDelay)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// flushOne posts the oldest batch. It reports false when the POST failed
// and should be retried; on success or a permanent refusal the batch
// leaves the queue.
func (s *Sender) flushOne(ctx context.Context) bool {
	s.mu.Lock()
	n := min(len(s.queue), s.o.BatchSize)
	batch := slices.Clone(s.queue[:n])
	s.mu.Unlock()
	if n == 0 {
		return true
	}
	err := s.post(ctx, batch)
	var perm *permanentError
	switch {
	case err == nil:
		s.remove(n, &s.stats.Sent)
		return true
	case errors.As(err, &perm):
		s.log.Error("webhook batch refused, dropped", zap.Int("events", n), zap.Error(err))
		s.remove(n, &s.stats.Failed)
		return true
	default:
		s.mu.Lock()
		s.stats.Retries++
		queued := len(s.queue)
		s.mu.Unlock()
		s.log.Warn("webhook post failed, will retry", zap.Int("events", n), zap.Int("queued", queued), zap.Error(err))
		return false
	}
}

// remove drops the n oldest events, adding n to the counter c.
func (s *Sender) remove(n int, c *uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*c += uint64(n)
	clear(s.queue[:n])
	s.queue = s.queue[n:]
	if len(s.queue) > 0 {
		s.first = time.Now() // the next batch gets its own flush interval
	}
	if len(s.queue) == 0 || cap(s.queue) > 2*s.o.MaxQueued {
		s.queue = slices.Clip(append([]Event(nil), s.queue...))
	}
}

// drain makes one last attempt at posting what is queued, within Timeout,
// and stops queueing.
func (s *Sender) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	for ctx.Err() == nil {
		s.mu.Lock()
		n := len(s.queue)
		s.mu.Unlock()
		if n == 0 || !s.flushOne(ctx) {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if n := len(s.queue); n > 0 {
		s.log.Warn("webhook events not sent at shutdown", zap.Int("events", n))
		s.stats.Dropped += uint64(n)
		s.queue = nil
	}
}

// permanentError is a refusal that a retry would meet again (4xx other
// than 408 and 429).
type permanentError struct{ status int }

func (e *permanentError) Error() string { return fmt.Sprintf("endpoint answered %d", e.status) }

// post sends one batch.
func (s *Sender) post(ctx context.Context, batch []Event) error {
	body, err := json.Marshal(batch)
	if err != nil {
		return &permanentError{} // cannot happen with these types
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-webhook")
	if s.o.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(s.o.Secret, body))
	}
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil
	case c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests:
		return &permanentError{status: c}
	default:
		return fmt.Errorf("endpoint answered %d", c)
	}
}

// Sign returns the value of SignatureHeader for body and secret, for
// receivers written in Go (and tests).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
