package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestBackoff: a [TSS04] reply puts the queue in backoff, where the sink
// sees at most backoff-max-msg-rate; after backoff-to-normal-after the
// queue is back to its normal (unlimited) rate (issue 5, acceptance
// "Backoff").
func TestBackoff(t *testing.T) {
	t.Parallel()
	const (
		trigger     = "trigger@bk.test"
		burst1      = 40
		burst2      = 50
		backoffRate = 5.0 // backoff-max-msg-rate = "5/s"
		toNormal    = 4 * time.Second
	)
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.51.10:25", testenv.SinkOptions{
		Hostname: "mx.bk.test",
		RcptReply: func(rcpt string, attempt int) (int, string, string) {
			if strings.EqualFold(rcpt, trigger) && attempt == 1 {
				return 421, "4.7.0", "[TSS04] Messages temporarily deferred"
			}
			return 250, "", ""
		},
	})
	mxTo(dns, "bk.test", "127.20.51.10")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.51.254"),
		DNS:    []string{dns.Addr()},
		Extra: `[domain."*"]
retry-after = ["1s"]

[domain."bk.test"]
max-smtp-out = 2
max-msg-rate = "unlimited"
smtp-pattern-list = "tss"
backoff-max-msg-rate = "5/s"
backoff-retry-after = ["1s"]
backoff-to-normal-after = "4s"

[[smtp-pattern-list.tss]]
reply = '/\[TSS04\]/'
mode = "backoff"
`,
	}.TOML())

	// The trigger's first RCPT draws the [TSS04] reply.
	sendOne(t, d.Addr(), trigger)
	d.WaitAcct(t, testenv.All(testenv.OfType("t"), testenv.ForRcpt(trigger)), 1, 10*time.Second)
	t0 := sink.RcptAttempts(trigger)[0]

	// A burst while in backoff: about 5 a second until t0+4s, then the rest
	// at the normal rate.
	ids1 := injectAll(t, d.Addr(), burst1, 4, 800, func(i int) string { return fmt.Sprintf("b1-%d@bk.test", i) })
	if len(ids1) != burst1 {
		t.Fatalf("%d of %d messages acknowledged", len(ids1), burst1)
	}
	checkDeliveredOnce(t, sink, ids1, 20*time.Second)
	set1 := idSet(ids1)
	var inBackoff, afterBackoff []time.Time
	end := t0.Add(toNormal - 100*time.Millisecond) // the daemon set its backoff after t0
	for _, m := range sink.Messages() {
		switch {
		case m.Time.Before(t0):
		case m.Time.Before(end):
			inBackoff = append(inBackoff, m.Time) // every message, the trigger's retry too
		case set1[m.MessageID]:
			afterBackoff = append(afterBackoff, m.Time)
		}
	}
	window := maxInWindow(inBackoff, time.Second)
	r, _ := steadyRate(inBackoff, 0)
	t.Logf("in backoff (%v after the [TSS04] reply): %d messages, %.2f/s, at most %d in any second; %d after",
		end.Sub(t0).Round(time.Millisecond), len(inBackoff), r, window, len(afterBackoff))
	if limit := int(backoffRate*end.Sub(t0).Seconds()) + 2; len(inBackoff) > limit {
		t.Errorf("%d messages delivered within %v of the [TSS04] reply, want at most %d (backoff-max-msg-rate 5/s)",
			len(inBackoff), end.Sub(t0).Round(time.Millisecond), limit)
	}
	if window > int(backoffRate)+1 {
		t.Errorf("%d messages within one second while in backoff, want at most %d", window, int(backoffRate)+1)
	}
	if len(inBackoff) < 10 {
		t.Errorf("only %d messages delivered while in backoff: the queue must keep sending at the backoff rate", len(inBackoff))
	}
	if rec := d.Acct(); len(testenv.Filter(rec, testenv.OfType("d"), testenv.ForRcpt(trigger))) != 1 {
		t.Errorf("the trigger was not delivered on its retry:\n%s", dump(testenv.Filter(rec, testenv.ForRcpt(trigger))))
	}

	// Back to normal: a later burst goes at well above the backoff rate.
	if wait := time.Until(t0.Add(toNormal + 500*time.Millisecond)); wait > 0 {
		time.Sleep(wait)
	}
	ids2 := injectAll(t, d.Addr(), burst2, 5, 800, func(i int) string { return fmt.Sprintf("b2-%d@bk.test", i) })
	if len(ids2) != burst2 {
		t.Fatalf("%d of %d messages acknowledged", len(ids2), burst2)
	}
	checkDeliveredOnce(t, sink, ids2, 15*time.Second)
	times2 := sinkTimes(sink, idSet(ids2))
	r2, _ := steadyRate(times2, 0)
	t.Logf("after backoff-to-normal-after: %d messages at %.1f/s, at most %d in one second", len(times2), r2, maxInWindow(times2, time.Second))
	if r2 < 5*backoffRate {
		t.Errorf("delivery rate %.1f/s after backoff-to-normal-after, want well above the backoff rate (≥ %.0f/s)", r2, 5*backoffRate)
	}
}

// TestGreylisting: a reply that matches a retry-soon pattern is retried
// after the pattern's retry-after (2 s here), not on the domain's 1 h
// schedule (issue 5, acceptance "Greylisting").
func TestGreylisting(t *testing.T) {
	t.Parallel()
	const rcpt = "grey@gl.test"
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.52.10:25", testenv.SinkOptions{
		Hostname: "mx.gl.test",
		RcptReply: func(_ string, attempt int) (int, string, string) {
			if attempt == 1 {
				return 450, "4.2.0", "Greylisted, try again later"
			}
			return 250, "", ""
		},
	})
	mxTo(dns, "gl.test", "127.20.52.10")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.52.254"),
		DNS:    []string{dns.Addr()},
		Extra: `[domain."*"]
retry-after = ["1h"]
smtp-pattern-list = "grey"

[[smtp-pattern-list.grey]]
reply = '/greylist/'
action = "retry-soon"
retry-after = "2s"
`,
	}.TOML())

	id := sendOne(t, d.Addr(), rcpt)
	d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt(rcpt)), 1, 15*time.Second)
	recs := testenv.Filter(d.Acct(), testenv.OfType("t", "d"), testenv.ForRcpt(rcpt))
	if got := typesOf(recs); got != "t d" {
		t.Fatalf("acct rows for %s: %q, want \"t d\":\n%s", rcpt, got, dump(recs))
	}
	tt, err1 := recs[0].Time("timeLogged")
	td, err2 := recs[1].Time("timeLogged")
	if err1 != nil || err2 != nil {
		t.Fatalf("acct times: %v, %v\n%s", err1, err2, dump(recs))
	}
	if gap := td.Sub(tt); gap < time.Second || gap > 4*time.Second {
		t.Errorf("acct t → d gap %v, want about 2 s (the pattern's retry-after)", gap)
	}
	tries := sink.RcptAttempts(rcpt)
	if len(tries) != 2 {
		t.Fatalf("sink saw %d RCPT attempts for %s, want 2", len(tries), rcpt)
	}
	gap := tries[1].Sub(tries[0])
	t.Logf("greylisted at %s, retried %v later", tries[0].Format("15:04:05.000"), gap.Round(time.Millisecond))
	if gap < 1800*time.Millisecond || gap > 4*time.Second {
		t.Errorf("retry %v after the greylisting reply, want about 2 s", gap)
	}
	if n := sink.MessageIDs()[id]; n != 1 {
		t.Errorf("message arrived %d times, want 1", n)
	}
}
