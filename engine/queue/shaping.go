package queue

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/throttle"
)

// Shaping: each queue ("site/vmta") leases its connections and takes its
// message and connection rates from the throttle backend, so that with
// Redis the limits are fleet-wide totals (unless per-node). A reply that
// matches a mode = "backoff" pattern puts the queue in backoff for every
// node; its backoff-* values then apply.

// leaseTTL bounds how long a crashed node's connection slot stays taken.
const leaseTTL = 2 * time.Minute

// limitKey names a queue's limit in the backend.
func (s *Scheduler) limitKey(q *queue, kind string) string {
	k := kind + ":" + q.name
	if q.settings.PerNode {
		k += "@" + s.opts.NodeID
	}
	return k
}

func modeKey(q *queue) string { return "mode:" + q.name }

// disabledPrefix starts the backend key of a VMTA disabled for a site:
// "disabled:vmta/site" (VMTA names cannot hold '/').
const disabledPrefix = "disabled:"

// disableSourceIP takes q's VMTA out of rotation for q's site until the
// given time, here and, through the backend, on every node.
func (s *Scheduler) disableSourceIP(q *queue, until time.Time, reason string) {
	s.opts.Pools.Disable(q.vmta, q.site, until, reason)
	st := throttle.State{Mode: throttle.ModeDisabled, Until: until, Reason: reason}
	if err := s.opts.Throttle.SetState(s.runCtx, disabledPrefix+q.vmta.Name+"/"+q.site, st); err != nil {
		s.log.Warn("disabled source IP not shared", zap.String("queue", q.name), zap.Error(err))
	}
}

// applyDisabled takes in another node's disable-source-ip.
func (s *Scheduler) applyDisabled(key string, st throttle.State) {
	name, site, ok := strings.Cut(strings.TrimPrefix(key, disabledPrefix), "/")
	v := s.opts.Pools.Get(name)
	if !ok || v == nil || st.Mode != throttle.ModeDisabled || st.Until.IsZero() {
		return
	}
	s.opts.Pools.Disable(v, site, st.Until, st.Reason)
}

// inBackoff reports whether q is in backoff now.
func (s *Scheduler) inBackoff(q *queue) bool {
	s.modesMu.Lock()
	st, ok := s.modes[q.name]
	s.modesMu.Unlock()
	if !ok || st.Mode != throttle.ModeBackoff {
		return false
	}
	return st.Until.IsZero() || s.opts.Now().Before(st.Until)
}

// limits returns q's connection limit, message rate and retry schedule
// for its current mode.
func (s *Scheduler) limits(q *queue) (maxOut int, rate config.Rate, retry []config.Duration) {
	set := q.settings
	if s.inBackoff(q) {
		return set.BackoffMaxSMTPOut, set.BackoffMaxMsgRate, set.BackoffRetryAfter
	}
	return set.MaxSMTPOut, set.MaxMsgRate, set.RetryAfter
}

func toRate(r config.Rate) throttle.Rate { return throttle.Rate{N: r.N, Per: r.Per} }

// acquireSlot waits for one of q's connection slots and for the connection
// rate. It gives up (nil) when q has no mail left or we are stopping.
func (s *Scheduler) acquireSlot(q *queue) throttle.Lease {
	ctx := s.runCtx
	q.mu.Lock()
	yield := q.yield > 0
	if yield {
		q.yield--
	}
	q.mu.Unlock()
	if yield {
		sleep(ctx, jitter(150*time.Millisecond))
	}
	for ctx.Err() == nil {
		maxOut, _, _ := s.limits(q)
		l, ok, err := s.opts.Throttle.AcquireConn(ctx, s.limitKey(q, "conn"), maxOut, leaseTTL)
		if err != nil {
			s.log.Warn("connection lease failed", zap.String("queue", q.name), zap.Error(err))
		}
		if ok {
			if cr := q.settings.MaxConnectRate; !cr.Unlimited() {
				if !s.waitRate(q, "connect", toRate(cr)) {
					l.Release(context.WithoutCancel(ctx))
					return nil
				}
			}
			return l
		}
		q.mu.Lock()
		empty := len(q.ready) == 0
		q.mu.Unlock()
		if empty {
			return nil
		}
		sleep(ctx, jitter(50*time.Millisecond))
	}
	return nil
}

// jitter returns a duration between d/2 and 3d/2, so that nodes polling
// for the same slot do not do so in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// waitRate waits until the rate named kind lets one more go. It returns
// false when we are stopping.
func (s *Scheduler) waitRate(q *queue, kind string, r throttle.Rate) bool {
	ctx := s.runCtx
	for ctx.Err() == nil {
		ok, wait, err := s.opts.Throttle.AllowN(ctx, s.limitKey(q, kind), r, 1)
		if err != nil {
			s.log.Warn("rate check failed", zap.String("queue", q.name), zap.Error(err))
			wait = time.Second
		} else if ok {
			return true
		}
		sleep(ctx, min(max(wait, time.Millisecond), 5*time.Second))
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// setBackoff puts q in backoff (every node sees it) until
// backoff-to-normal-after has passed without another such reply, or until
// a delivery when that is "delivery".
func (s *Scheduler) setBackoff(q *queue, reason string) {
	var until time.Time
	if d := q.settings.BackoffToNormalAfter.D(); d > 0 {
		until = s.opts.Now().Add(d)
	}
	st := throttle.State{Mode: throttle.ModeBackoff, Until: until, Reason: reason}
	was := s.inBackoff(q)
	s.noteMode(q.name, st)
	if err := s.opts.Throttle.SetState(s.runCtx, modeKey(q), st); err != nil {
		s.log.Warn("backoff state not shared", zap.String("queue", q.name), zap.Error(err))
	}
	if !was {
		s.log.Warn("queue mode changed", zap.String("queue", q.name), zap.String("mode", "backoff"),
			zap.Time("until", until), zap.String("reason", reason))
	}
}

// deliveredInBackoff ends a backoff that lasts "until delivery".
func (s *Scheduler) deliveredInBackoff(q *queue) {
	if q.settings.BackoffToNormalAfter != 0 || !s.inBackoff(q) {
		return
	}
	st := throttle.State{Mode: throttle.ModeNormal, Reason: "delivered"}
	s.noteMode(q.name, st)
	if err := s.opts.Throttle.SetState(s.runCtx, modeKey(q), st); err != nil {
		s.log.Warn("mode not shared", zap.String("queue", q.name), zap.Error(err))
	}
	s.log.Warn("queue mode changed", zap.String("queue", q.name), zap.String("mode", "normal"), zap.String("reason", "delivered"))
}

func (s *Scheduler) noteMode(queue string, st throttle.State) {
	s.modesMu.Lock()
	defer s.modesMu.Unlock()
	if st.Mode == throttle.ModeNormal || st.Mode == "" {
		delete(s.modes, queue)
		return
	}
	s.modes[queue] = st
}

// watchModes keeps s.modes in step with the backend, so that a backoff set
// by another node applies here within its pub/sub delay.
func (s *Scheduler) watchModes(ctx context.Context) {
	for ch := range s.opts.Throttle.Subscribe(ctx) {
		if ch.Resync() {
			s.mu.Lock()
			names := make([]string, 0, len(s.queues))
			for n := range s.queues {
				names = append(names, n)
			}
			s.mu.Unlock()
			for _, n := range names {
				if st, err := s.opts.Throttle.GetState(ctx, "mode:"+n); err == nil {
					s.noteMode(n, st)
				}
			}
			continue
		}
		if strings.HasPrefix(ch.Key, disabledPrefix) {
			s.applyDisabled(ch.Key, ch.State)
			continue
		}
		if len(ch.Key) > 5 && ch.Key[:5] == "mode:" {
			name := ch.Key[5:]
			was := func() bool { s.modesMu.Lock(); defer s.modesMu.Unlock(); _, ok := s.modes[name]; return ok }()
			s.noteMode(name, ch.State)
			if now := ch.State.Mode == throttle.ModeBackoff; now != was {
				s.log.Info("queue mode changed by the fleet", zap.String("queue", name), zap.String("mode", string(ch.State.Mode)), zap.String("reason", ch.State.Reason))
			}
		}
	}
}
