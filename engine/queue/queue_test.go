package queue

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/dns"
	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/engine/testenv"
	"github.com/sluice-mta/sluice/pools"
)

// Addresses of this package: receivers in 127.12.0.0/16, port 25.

type recorder struct {
	mu   sync.Mutex
	recs []*acct.Record
}

func (r *recorder) Write(rec *acct.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *recorder) count(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Type == typ {
			n++
		}
	}
	return n
}

func (r *recorder) wait(t *testing.T, typ string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.count(typ) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d %q records, want %d", r.count(typ), typ, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type env struct {
	sch   *Scheduler
	store *spool.Store
	acct  *recorder
	dns   *dnstest.Server
	pools *pools.Registry
}

func setup(t *testing.T, dom config.Domain) *env {
	t.Helper()
	srv := dnstest.Start(t)
	res, err := dns.New(dns.Config{Servers: []string{srv.Addr()}, Timeout: time.Second}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	st, err := spool.Open(t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Hostname: "mta.test", Domains: map[string]*config.Domain{"*": &dom}}
	rec := &recorder{}
	reg := pools.New(cfg, pools.Options{Counters: st})
	sch := New(Options{
		Hostname:    "mta.test",
		Pools:       reg,
		Domains:     cfg.DomainForVMTA,
		Rules:       cfg.Rules,
		Delivery:    config.Delivery{Port: 25},
		Store:       st,
		Resolver:    res,
		Acct:        rec,
		Classifier:  bounce.NewClassifier(nil),
		Log:         zap.NewNop(),
		IdleTimeout: 200 * time.Millisecond,
	})
	sch.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sch.Stop(ctx)
		st.Close()
	})
	return &env{sch: sch, store: st, acct: rec, dns: srv, pools: reg}
}

func (e *env) inject(t *testing.T, from string, rcpts ...string) string {
	t.Helper()
	return e.injectEnv(t, spool.Envelope{From: from}, rcpts...)
}

func (e *env) injectEnv(t *testing.T, en spool.Envelope, rcpts ...string) string {
	t.Helper()
	en.Received = time.Now()
	m := &spool.Message{ID: e.store.NewID(), Env: en}
	for _, r := range rcpts {
		m.Rcpts = append(m.Rcpts, spool.Rcpt{Addr: r})
	}
	body := []byte(fmt.Sprintf("Message-ID: <%s@test>\r\nSubject: t\r\n\r\nhello\r\n", m.ID))
	m.Env.Size = int64(len(body))
	if err := e.store.Put(context.Background(), m, body); err != nil {
		t.Fatal(err)
	}
	e.sch.Enqueue(m)
	return m.ID
}

func ptr[T any](v T) *T { return &v }

func TestOneTransactionPerDomain(t *testing.T) {
	e := setup(t, config.Domain{})
	s1 := testenv.StartSink(t, "127.12.1.1:25", testenv.SinkOptions{})
	s2 := testenv.StartSink(t, "127.12.1.2:25", testenv.SinkOptions{})
	e.dns.SetMX("one.test", dnstest.MX{Pref: 10, Host: "mx.one.test"})
	e.dns.SetA("mx.one.test", "127.12.1.1")
	e.dns.SetMX("two.test", dnstest.MX{Pref: 10, Host: "mx.two.test"})
	e.dns.SetA("mx.two.test", "127.12.1.2")

	e.inject(t, "s@sender.test", "a@one.test", "b@two.test", "c@ONE.test", "d@one.test", "e@two.test")
	e.acct.wait(t, "d", 5)
	s1.WaitCount(t, 1, 5*time.Second)
	s2.WaitCount(t, 1, 5*time.Second)
	if got := s1.Messages()[0].Rcpts; len(got) != 3 {
		t.Errorf("one.test got rcpts %v in one transaction, want 3", got)
	}
	if got := s2.Messages()[0].Rcpts; len(got) != 2 {
		t.Errorf("two.test got rcpts %v, want 2", got)
	}
	if s1.Count() != 1 || s2.Count() != 1 {
		t.Errorf("transactions: %d and %d, want 1 each", s1.Count(), s2.Count())
	}
	for _, r := range e.acct.recs {
		if r.Queue != "one.test/default" && r.Queue != "two.test/default" {
			t.Errorf("queue %q", r.Queue)
		}
	}
}

func TestConnectionLimits(t *testing.T) {
	e := setup(t, config.Domain{MaxSMTPOut: ptr(2), MaxMsgPerConnection: ptr(3)})
	s := testenv.StartSink(t, "127.12.2.1:25", testenv.SinkOptions{Delay: 20 * time.Millisecond})
	e.dns.SetMX("lim.test", dnstest.MX{Pref: 10, Host: "mx.lim.test"})
	e.dns.SetA("mx.lim.test", "127.12.2.1")
	for i := 0; i < 12; i++ {
		e.inject(t, "s@sender.test", fmt.Sprintf("r%d@lim.test", i))
	}
	e.acct.wait(t, "d", 12)
	if m := s.MaxConcurrent(); m > 2 {
		t.Errorf("max concurrent connections %d, want ≤ 2 (max-smtp-out)", m)
	}
	perConn := map[int]int{}
	for _, m := range s.Messages() {
		perConn[m.ConnID]++
	}
	for id, n := range perConn {
		if n > 3 {
			t.Errorf("connection %d carried %d messages, want ≤ 3", id, n)
		}
	}
	if len(perConn) < 4 {
		t.Errorf("%d connections for 12 messages at 3 per connection", len(perConn))
	}
}

func TestRetryThenBounceAndStopKeepsPending(t *testing.T) {
	e := setup(t, config.Domain{RetryAfter: []config.Duration{config.Duration(300 * time.Millisecond)}, BounceAfter: ptr(config.Duration(time.Hour))})
	testenv.StartSink(t, "127.12.3.1:25", testenv.SinkOptions{
		RcptReply: func(rcpt string, attempt int) (int, string, string) {
			switch {
			case rcpt == "hard@r.test":
				return 550, "5.1.1", "no such user"
			case rcpt == "soft@r.test" && attempt <= 2:
				return 451, "4.3.0", "try later"
			}
			return 0, "", ""
		},
	})
	e.dns.SetMX("r.test", dnstest.MX{Pref: 10, Host: "mx.r.test"})
	e.dns.SetA("mx.r.test", "127.12.3.1")
	e.inject(t, "s@sender.test", "hard@r.test", "soft@r.test")
	e.acct.wait(t, "d", 1)
	if n := e.acct.count("t"); n != 2 {
		t.Errorf("%d t records, want 2", n)
	}
	if n := e.acct.count("b"); n != 1 {
		t.Errorf("%d b records, want 1", n)
	}
	for _, r := range e.acct.recs {
		if r.Type == "b" && r.BounceCat != bounce.BadMailbox {
			t.Errorf("bounceCat %q, want bad-mailbox", r.BounceCat)
		}
	}
	if n := e.store.Len(); n != 0 {
		t.Errorf("spool holds %d messages after all outcomes", n)
	}
}

func TestDNSFailures(t *testing.T) {
	e := setup(t, config.Domain{RetryAfter: []config.Duration{config.Duration(time.Hour)}})
	e.dns.SetMX("null.test", dnstest.MX{Pref: 0, Host: "."})
	e.dns.SetServFail("broken.test")
	e.inject(t, "s@sender.test", "a@null.test")
	e.inject(t, "s@sender.test", "a@nx.test")
	e.inject(t, "s@sender.test", "a@broken.test")
	e.acct.wait(t, "b", 2)
	e.acct.wait(t, "t", 1)
	for _, r := range e.acct.recs {
		if r.Type == "b" && r.BounceCat != bounce.BadDomain {
			t.Errorf("%s: bounceCat %q, want bad-domain", r.Rcpt, r.BounceCat)
		}
		if r.Type == "t" && r.Rcpt != "a@broken.test" {
			t.Errorf("unexpected deferral of %s", r.Rcpt)
		}
	}
	if n := e.store.Len(); n != 1 {
		t.Errorf("spool holds %d messages, want the deferred one", n)
	}
}

func TestBounceDSNGoesToSenderOnly(t *testing.T) {
	e := setup(t, config.Domain{})
	rcv := testenv.StartSink(t, "127.12.4.1:25", testenv.SinkOptions{
		RcptReply: func(rcpt string, _ int) (int, string, string) { return 550, "5.1.1", "user unknown" },
	})
	snd := testenv.StartSink(t, "127.12.4.2:25", testenv.SinkOptions{})
	e.dns.SetMX("gone.test", dnstest.MX{Pref: 10, Host: "mx.gone.test"})
	e.dns.SetA("mx.gone.test", "127.12.4.1")
	e.dns.SetMX("sender.test", dnstest.MX{Pref: 10, Host: "mx.sender.test"})
	e.dns.SetA("mx.sender.test", "127.12.4.2")

	e.injectEnv(t, spool.Envelope{From: "news@sender.test", BounceDSN: true, EnvID: "env-1"}, "x@gone.test")
	e.injectEnv(t, spool.Envelope{From: "", BounceDSN: true}, "y@gone.test") // null sender: no DSN
	e.acct.wait(t, "b", 2)
	snd.WaitCount(t, 1, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if snd.Count() != 1 {
		t.Fatalf("sender got %d DSNs, want 1", snd.Count())
	}
	m := snd.Messages()[0]
	if m.From != "" || len(m.Rcpts) != 1 || m.Rcpts[0] != "news@sender.test" {
		t.Errorf("DSN envelope from %q to %v", m.From, m.Rcpts)
	}
	for _, want := range []string{"report-type=delivery-status", "Final-Recipient: rfc822; x@gone.test", "Status: 5.1.1", "Original-Envelope-Id: env-1"} {
		if !strings.Contains(string(m.Data), want) {
			t.Errorf("DSN lacks %q", want)
		}
	}
	if rcv.Count() != 0 {
		t.Errorf("receiver accepted %d messages", rcv.Count())
	}
}

// TestFailedHostHoldsQueue: after a connection failure the queue waits for
// its first retry step; mail arriving meanwhile opens no new connection.
func TestFailedHostHoldsQueue(t *testing.T) {
	e := setup(t, config.Domain{RetryAfter: []config.Duration{config.Duration(2 * time.Second)}})
	ln, err := net.Listen("tcp", "127.12.5.1:25")
	if err != nil {
		t.Fatal(err)
	}
	var accepts atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.Close() // no greeting: a failed connection
		}
	}()
	t.Cleanup(func() { ln.Close() })
	e.dns.SetMX("down.test", dnstest.MX{Pref: 10, Host: "mx.down.test"})
	e.dns.SetA("mx.down.test", "127.12.5.1")

	e.inject(t, "s@sender.test", "a@down.test")
	e.acct.wait(t, "t", 1)
	for i := 0; i < 5; i++ {
		e.inject(t, "s@sender.test", fmt.Sprintf("b%d@down.test", i))
	}
	time.Sleep(500 * time.Millisecond)
	if n := accepts.Load(); n != 1 {
		t.Errorf("%d connections while the queue was held, want 1", n)
	}
	if n := e.acct.count("t"); n != 1 {
		t.Errorf("%d t records while held, want 1", n)
	}
	// At the retry, one connection attempt serves the whole queue.
	e.acct.wait(t, "t", 6)
	if n := accepts.Load(); n > 3 {
		t.Errorf("%d connections after the retry, want a few", n)
	}
}

func TestMaxRcptPerMessage(t *testing.T) {
	e := setup(t, config.Domain{MaxRcptPerMessage: ptr(2)})
	s := testenv.StartSink(t, "127.12.6.1:25", testenv.SinkOptions{})
	e.dns.SetMX("split.test", dnstest.MX{Pref: 10, Host: "mx.split.test"})
	e.dns.SetA("mx.split.test", "127.12.6.1")
	var rcpts []string
	for i := 0; i < 5; i++ {
		rcpts = append(rcpts, fmt.Sprintf("r%d@split.test", i))
	}
	e.inject(t, "s@sender.test", rcpts...)
	e.acct.wait(t, "d", 5)
	s.WaitCount(t, 3, 5*time.Second)
	got := 0
	for _, m := range s.Messages() {
		if len(m.Rcpts) > 2 {
			t.Errorf("a transaction carried %d recipients, want ≤ 2", len(m.Rcpts))
		}
		got += len(m.Rcpts)
	}
	if got != 5 || s.Count() != 3 {
		t.Errorf("%d transactions carrying %d recipients, want 3 and 5", s.Count(), got)
	}
}

// TestNoVMTAExpires: mail that no VMTA may take (here the only one is
// disabled for the site) still bounces at bounce-after.
func TestNoVMTAExpires(t *testing.T) {
	e := setup(t, config.Domain{BounceAfter: ptr(config.Duration(time.Second))})
	e.pools.Disable(e.pools.Get("default"), "blocked.test", time.Now().Add(time.Hour), "test")
	e.inject(t, "s@sender.test", "a@blocked.test")
	e.acct.wait(t, "b", 1)
	for _, r := range e.acct.recs {
		if r.Type == "b" && r.BounceCat != bounce.MessageExpired {
			t.Errorf("bounceCat %q, want message-expired", r.BounceCat)
		}
	}
	if n := e.store.Len(); n != 0 {
		t.Errorf("spool holds %d messages", n)
	}
}
