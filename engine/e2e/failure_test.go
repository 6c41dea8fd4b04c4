package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestTemporaryFailure: the receiver answers 451 to the first two
// attempts; with retry-after ["1s","2s"] acct shows t, t, d for the
// recipient, spaced by the configured intervals.
func TestTemporaryFailure(t *testing.T) {
	t.Parallel()
	dns := startDNS(t)
	const rcpt = "retry@tf.test"
	sink := testenv.StartSink(t, "127.20.2.1:25", testenv.SinkOptions{
		RcptReply: func(to string, attempt int) (int, string, string) {
			if attempt <= 2 {
				return 451, "4.3.0", "temporarily unavailable, try again"
			}
			return 0, "", ""
		},
	})
	mxTo(dns, "tf.test", "127.20.2.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.2.254"),
		DNS:     []string{dns.Addr()},
		Domains: map[string]testenv.Domain{"*": {RetryAfter: []string{"1s", "2s"}, BounceAfter: "1m"}},
	}.TOML())

	id := sendOne(t, d.Addr(), rcpt)
	d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt(rcpt)), 1, 30*time.Second)
	recs := testenv.Filter(d.Acct(), testenv.OfType("d", "b", "t"), testenv.ForRcpt(rcpt))
	if typesOf(recs) != "t t d" {
		t.Fatalf("rows for %s: %q, want \"t t d\":\n%s", rcpt, typesOf(recs), dump(recs))
	}
	for _, r := range recs[:2] {
		if !strings.HasPrefix(r["dsnStatus"], "4.") || !strings.Contains(r["dsnDiag"], "451") {
			t.Errorf("t row: dsnStatus %q dsnDiag %q", r["dsnStatus"], r["dsnDiag"])
		}
	}
	// acct times may have whole-second resolution; allow for it.
	slack := 500 * time.Millisecond
	if !strings.Contains(recs[0]["timeLogged"], ".") {
		slack = time.Second
	}
	checkGaps(t, "acct timeLogged", []time.Duration{time.Second, 2 * time.Second}, slack,
		mustTime(t, recs[0]), mustTime(t, recs[1]), mustTime(t, recs[2]))
	tries := sink.RcptAttempts(rcpt)
	if len(tries) != 3 {
		t.Fatalf("sink saw %d attempts, want 3", len(tries))
	}
	checkGaps(t, "sink attempts", []time.Duration{time.Second, 2 * time.Second}, 500*time.Millisecond, tries...)
	t.Logf("attempt gaps at the sink: %v, %v", tries[1].Sub(tries[0]).Round(time.Millisecond), tries[2].Sub(tries[1]).Round(time.Millisecond))
	if got := sink.MessageIDs()[id]; got != 1 {
		t.Errorf("message at the sink %d times, want 1", got)
	}
}

func mustTime(t *testing.T, r testenv.Record) time.Time {
	t.Helper()
	tm, err := r.Time("timeLogged")
	if err != nil {
		t.Fatalf("timeLogged of %v: %v", r, err)
	}
	return tm
}

// checkGaps asserts that the gaps between consecutive times are at least
// want[i]-slack and not wildly more (want[i]+5s: the short schedule, not a
// default one).
func checkGaps(t *testing.T, what string, want []time.Duration, slack time.Duration, times ...time.Time) {
	t.Helper()
	for i := 1; i < len(times) && i <= len(want); i++ {
		gap := times[i].Sub(times[i-1])
		if gap < want[i-1]-slack || gap > want[i-1]+5*time.Second {
			t.Errorf("%s: gap %d is %v, want %v (slack -%v)", what, i, gap, want[i-1], slack)
		}
	}
}

// TestPermanentFailure: 550 5.1.1 gives exactly one b row, bad-mailbox, and
// no retry; the message's other recipient is delivered.
func TestPermanentFailure(t *testing.T) {
	t.Parallel()
	dns := startDNS(t)
	const bad, good = "nobody@pf.test", "somebody@pf.test"
	sink := testenv.StartSink(t, "127.20.3.1:25", testenv.SinkOptions{
		RcptReply: func(to string, _ int) (int, string, string) {
			if strings.EqualFold(to, bad) {
				return 550, "5.1.1", "<" + to + ">: Recipient address rejected: User unknown"
			}
			return 0, "", ""
		},
	})
	mxTo(dns, "pf.test", "127.20.3.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.3.254"),
		DNS:     []string{dns.Addr()},
		Domains: map[string]testenv.Domain{"*": {RetryAfter: []string{"1s"}, BounceAfter: "1m"}},
	}.TOML())

	id := sendOne(t, d.Addr(), bad, good)
	d.WaitAcct(t, testenv.All(testenv.OfType("b"), testenv.ForRcpt(bad)), 1, 20*time.Second)
	d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt(good)), 1, 20*time.Second)
	time.Sleep(3 * time.Second) // retry-after is 1s: a wrong retry would show by now

	recs := testenv.Filter(d.Acct(), testenv.OfType("d", "b", "t"), testenv.ForRcpt(bad))
	if typesOf(recs) != "b" {
		t.Fatalf("rows for %s: %q, want one b:\n%s", bad, typesOf(recs), dump(recs))
	}
	b := recs[0]
	if b["bounceCat"] != "bad-mailbox" || !strings.HasPrefix(b["dsnStatus"], "5.1.1") || !strings.Contains(b["dsnDiag"], "550") {
		t.Errorf("b row: bounceCat %q dsnStatus %q dsnDiag %q", b["bounceCat"], b["dsnStatus"], b["dsnDiag"])
	}
	if n := len(sink.RcptAttempts(bad)); n != 1 {
		t.Errorf("sink saw %d attempts for %s, want 1", n, bad)
	}
	if got := testenv.Filter(d.Acct(), testenv.ForRcpt(good), testenv.OfType("d", "b", "t")); typesOf(got) != "d" {
		t.Errorf("rows for %s: %q, want d", good, typesOf(got))
	}
	msgs := sink.Messages()
	if len(msgs) != 1 || msgs[0].MessageID != id || len(msgs[0].Rcpts) != 1 || !strings.EqualFold(msgs[0].Rcpts[0], good) {
		t.Errorf("sink holds %d messages, want the one for %s only", len(msgs), good)
	}
}

// TestExpiry: a recipient that is always deferred bounces as
// message-expired once bounce-after has passed, and is not tried again.
func TestExpiry(t *testing.T) {
	t.Parallel()
	dns := startDNS(t)
	const rcpt = "later@exp.test"
	sink := testenv.StartSink(t, "127.20.4.1:25", testenv.SinkOptions{
		RcptReply: func(string, int) (int, string, string) { return 451, "4.3.0", "try again later" },
	})
	mxTo(dns, "exp.test", "127.20.4.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.4.254"),
		DNS:     []string{dns.Addr()},
		Domains: map[string]testenv.Domain{"*": {RetryAfter: []string{"1s"}, BounceAfter: "10s"}},
	}.TOML())

	start := time.Now()
	sendOne(t, d.Addr(), rcpt)
	recs := d.WaitAcct(t, testenv.All(testenv.OfType("b"), testenv.ForRcpt(rcpt)), 1, 30*time.Second)
	if took := time.Since(start); took < 9*time.Second {
		t.Errorf("bounced after %v, before bounce-after (10s)", took)
	}
	b := recs[0]
	if b["bounceCat"] != "message-expired" {
		t.Errorf("b row: bounceCat %q, want message-expired: %v", b["bounceCat"], b)
	}
	tries := len(sink.RcptAttempts(rcpt))
	if tries < 3 {
		t.Errorf("sink saw %d attempts in 10s with retry-after 1s", tries)
	}
	time.Sleep(2 * time.Second)
	if now := len(sink.RcptAttempts(rcpt)); now != tries {
		t.Errorf("%d more attempts after the bounce", now-tries)
	}
	if got := testenv.Filter(d.Acct(), testenv.ForRcpt(rcpt), testenv.OfType("b", "d")); len(got) != 1 {
		t.Errorf("rows b/d for %s: %q, want one b", rcpt, typesOf(got))
	}
	if sink.Count() != 0 {
		t.Errorf("sink accepted %d messages", sink.Count())
	}
}
