package queue

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/engine/testenv"
)

// Addresses of the control tests: receivers in 127.42.1.0/24, port 25.

func TestValidPattern(t *testing.T) {
	cases := []struct {
		p    string
		ok   bool
		norm string
	}{
		{"gmail.com/*", true, "gmail.com/*"},
		{"*/vmta1", true, "*/vmta1"},
		{"Gmail.COM", true, "gmail.com/*"},
		{"d2.test/vmta2", true, "d2.test/vmta2"},
		{"*/*", true, "*/*"},
		{"a/b/c", false, ""},
		{"/x", false, ""},
		{"x/", false, ""},
		{"[/x", false, ""},
	}
	for _, c := range cases {
		err := ValidPattern(c.p)
		if (err == nil) != c.ok {
			t.Errorf("ValidPattern(%q) = %v, want ok=%v", c.p, err, c.ok)
		}
		if c.ok && NormalizePattern(c.p) != c.norm {
			t.Errorf("NormalizePattern(%q) = %q, want %q", c.p, NormalizePattern(c.p), c.norm)
		}
	}
	if !matchQueue("gmail.com/*", "GMAIL.com/vmta1") || matchQueue("gmail.com/*", "yahoo.com/vmta1") || !matchQueue("*/vmta1", "x.test/vmta1") {
		t.Error("matchQueue")
	}
}

func findQueue(qs []QueueStatus, name string) *QueueStatus {
	for i := range qs {
		if qs[i].Name == name {
			return &qs[i]
		}
	}
	return nil
}

func TestPauseResume(t *testing.T) {
	e := setup(t, config.Domain{})
	sink := testenv.StartSink(t, "127.42.1.1:25", testenv.SinkOptions{})
	e.dns.SetMX("p.test", dnstest.MX{Pref: 10, Host: "mx.p.test"})
	e.dns.SetA("mx.p.test", "127.42.1.1")
	e.dns.SetMX("o.test", dnstest.MX{Pref: 10, Host: "mx.p.test"})

	if n := e.sch.Pause("p.test/*", "maintenance"); n != 0 {
		t.Errorf("Pause matched %d existing queues, want 0", n)
	}
	e.inject(t, "s@sender.test", "a@p.test", "b@o.test")
	e.acct.wait(t, "d", 1) // o.test is not paused
	time.Sleep(300 * time.Millisecond)
	if n := e.acct.count("d"); n != 1 {
		t.Fatalf("%d d records while p.test is paused, want 1", n)
	}
	q := findQueue(e.sch.Queues(), "p.test/default")
	if q == nil || q.Mode != "paused" || q.Reason != "maintenance" || q.Parked != 1 || q.Queued != 1 {
		t.Fatalf("paused queue status = %+v", q)
	}
	if n := e.sch.Resume("*/*"); n != 1 {
		t.Errorf("Resume lifted %d pauses, want 1", n)
	}
	e.acct.wait(t, "d", 2)
	sink.WaitCount(t, 2, 5*time.Second)
	if q := findQueue(e.sch.Queues(), "p.test/default"); q != nil && (q.Mode != "normal" || q.Queued != 0) {
		t.Errorf("after resume: %+v", q)
	}
}

func TestHoldReleaseJob(t *testing.T) {
	e := setup(t, config.Domain{})
	testenv.StartSink(t, "127.42.1.2:25", testenv.SinkOptions{})
	e.dns.SetMX("h.test", dnstest.MX{Pref: 10, Host: "mx.h.test"})
	e.dns.SetA("mx.h.test", "127.42.1.2")

	e.sch.HoldJob("j1", "complaints")
	e.injectEnv(t, spool.Envelope{From: "s@sender.test", JobID: "j1"}, "a@h.test", "b@h.test")
	e.injectEnv(t, spool.Envelope{From: "s@sender.test", JobID: "j2"}, "c@h.test")
	e.acct.wait(t, "d", 1)
	time.Sleep(300 * time.Millisecond)
	if n := e.acct.count("d"); n != 1 {
		t.Fatalf("%d d records while j1 is held, want 1", n)
	}
	if h := e.sch.HeldJobs(); h["j1"] != "complaints" {
		t.Errorf("HeldJobs = %v", h)
	}
	if e.sch.ReleaseJob("nope") {
		t.Error("ReleaseJob of a job never held = true")
	}
	if !e.sch.ReleaseJob("j1") {
		t.Error("ReleaseJob(j1) = false")
	}
	e.acct.wait(t, "d", 3)
}

func TestCancel(t *testing.T) {
	e := setup(t, config.Domain{RetryAfter: []config.Duration{config.Duration(time.Hour)}})
	testenv.StartSink(t, "127.42.1.3:25", testenv.SinkOptions{
		RcptReply: func(rcpt string, attempt int) (int, string, string) { return 451, "4.3.0", "try later" },
	})
	e.dns.SetMX("c.test", dnstest.MX{Pref: 10, Host: "mx.c.test"})
	e.dns.SetA("mx.c.test", "127.42.1.3")
	e.dns.SetMX("c2.test", dnstest.MX{Pref: 10, Host: "mx.c.test"})
	e.dns.SetMX("sender.test", dnstest.MX{Pref: 10, Host: "mx.c.test"})

	e.injectEnv(t, spool.Envelope{From: "s@sender.test", JobID: "j1", BounceDSN: true}, "a@c.test", "b@c.test", "x@c2.test")
	e.injectEnv(t, spool.Envelope{From: "s@sender.test", JobID: "j2"}, "c@c.test", "d@c.test")
	e.acct.wait(t, "t", 5)
	if q := findQueue(e.sch.Queues(), "c.test/default"); q == nil || q.Deferred != 4 || q.NextAttempt.IsZero() {
		t.Fatalf("c.test before cancel: %+v", q)
	}
	if n := e.sch.CancelJob("j1", "", ""); n != 3 {
		t.Errorf("CancelJob = %d, want 3", n)
	}
	e.acct.wait(t, "b", 3)
	for _, r := range e.acct.recs {
		if r.Type == "b" && (r.BounceCat != "admin" || r.JobID != "j1") {
			t.Errorf("b record %+v", r)
		}
	}
	// The sender of j1 asked for DSNs: one report for the three.
	deadline := time.Now().Add(5 * time.Second)
	for e.store.Len() != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := e.store.Len(); n != 2 { // j2, and the DSN to s@sender.test
		t.Errorf("spool holds %d messages, want 2", n)
	}
	if n := e.sch.CancelRecipient("C@c.test", "policy-related", "suppressed"); n != 1 {
		t.Errorf("CancelRecipient = %d, want 1", n)
	}
	if n := e.sch.CancelQueue("c.test/*", "admin", ""); n != 1 {
		t.Errorf("CancelQueue = %d, want 1", n)
	}
	// The DSN: now, or when its attempt in flight ends.
	if n := e.sch.CancelRecipient("@sender.test", "admin", ""); n > 1 {
		t.Errorf("CancelRecipient(@sender.test) = %d, want 1 (or 0 in flight)", n)
	}
	e.acct.wait(t, "b", 6)
	if n := e.store.Len(); n != 0 {
		t.Errorf("spool holds %d messages after cancelling everything", n)
	}
	if q := findQueue(e.sch.Queues(), "c.test/default"); q != nil && q.Queued != 0 {
		t.Errorf("c.test after cancel: %+v", q)
	}
}

// TestReconfigureUnderLoad swaps the settings of live queues while mail
// flows: every message arrives once, and new queues take the new settings.
func TestReconfigureUnderLoad(t *testing.T) {
	e := setup(t, config.Domain{MaxSMTPOut: ptr(2), MaxMsgPerConnection: ptr(3)})
	sink := testenv.StartSink(t, "127.42.1.4:25", testenv.SinkOptions{Delay: 5 * time.Millisecond})
	e.dns.SetMX("rc.test", dnstest.MX{Pref: 10, Host: "mx.rc.test"})
	e.dns.SetA("mx.rc.test", "127.42.1.4")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			e.sch.Reconfigure()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for i := range 40 {
		e.inject(t, "s@sender.test", fmt.Sprintf("r%d@rc.test", i))
	}
	<-done
	e.acct.wait(t, "d", 40)
	sink.WaitCount(t, 40, 10*time.Second)
	if n := len(sink.MessageIDs()); n != 40 {
		t.Errorf("%d distinct messages at the sink, want 40", n)
	}
}

// TestParkedMailExpires: a pause keeps mail from attempts, not past its
// bounce-after.
func TestParkedMailExpires(t *testing.T) {
	e := setup(t, config.Domain{BounceAfter: ptr(config.Duration(time.Second))})
	e.dns.SetMX("x.test", dnstest.MX{Pref: 10, Host: "mx.x.test"})
	e.dns.SetA("mx.x.test", "127.42.1.5")
	e.sch.Pause("x.test", "")
	e.inject(t, "s@sender.test", "a@x.test")
	e.acct.wait(t, "b", 1)
	for _, r := range e.acct.recs {
		if r.Type == "b" && (r.BounceCat != "message-expired" || !strings.Contains(r.DSNDiag, "queue paused")) {
			t.Errorf("b record %+v", r)
		}
	}
	if n := e.store.Len(); n > 1 { // at most the DSN to s@sender.test
		t.Errorf("spool holds %d messages", n)
	}
}

// TestCancelInFlight: mail in a transaction when it is cancelled is
// bounced when that transaction defers it.
func TestCancelInFlight(t *testing.T) {
	e := setup(t, config.Domain{RetryAfter: []config.Duration{config.Duration(time.Hour)}})
	inRcpt := make(chan struct{}, 1)
	testenv.StartSink(t, "127.42.1.6:25", testenv.SinkOptions{
		RcptReply: func(rcpt string, attempt int) (int, string, string) {
			select {
			case inRcpt <- struct{}{}:
			default:
			}
			time.Sleep(300 * time.Millisecond)
			return 451, "4.3.0", "try later"
		},
	})
	e.dns.SetMX("f.test", dnstest.MX{Pref: 10, Host: "mx.f.test"})
	e.dns.SetA("mx.f.test", "127.42.1.6")
	e.inject(t, "s@sender.test", "a@f.test")
	<-inRcpt
	if n := e.sch.CancelRecipient("A@f.test", "policy-related", "suppressed"); n != 0 {
		t.Errorf("CancelRecipient in flight = %d, want 0 now", n)
	}
	e.acct.wait(t, "b", 1)
	for _, r := range e.acct.recs {
		if r.Type == "b" && r.BounceCat != "policy-related" {
			t.Errorf("b record %+v", r)
		}
	}
	// Mail accepted after the cancel is not concerned.
	e.inject(t, "s@sender.test", "a@f.test")
	e.acct.wait(t, "t", 2)
	time.Sleep(100 * time.Millisecond)
	if n := e.acct.count("b"); n != 1 {
		t.Errorf("%d b records, want 1: the new message was cancelled too", n)
	}
}
