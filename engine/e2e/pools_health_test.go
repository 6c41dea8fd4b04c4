package e2e

import (
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// ipSink is an SMTP receiver that decides its RCPT reply by the client's
// address, which testenv.Sink cannot: it plays an ISP that blocklists one
// source IP.
type ipSink struct {
	addr   string
	reject func(ip string) error // nil accepts; an *smtp.SMTPError rejects RCPT
	srv    *smtp.Server
	l      net.Listener
	done   chan struct{}

	mu    sync.Mutex
	rcpts []rcptEvent
	msgs  []*testenv.Message
}

// rcptEvent is one RCPT TO the sink answered.
type rcptEvent struct {
	IP, Rcpt string
	Time     time.Time
	Rejected bool
}

// startIPSink listens on addr until the test ends.
func startIPSink(t *testing.T, addr string, reject func(ip string) error) *ipSink {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("ipSink listen %s: %v", addr, err)
	}
	s := &ipSink{addr: addr, reject: reject, l: l, done: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		ip := ""
		if a, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
			ip = a.IP.String()
		}
		return &ipSession{s: s, c: c, ip: ip}, nil
	}))
	srv.Domain = "mx.ipsink.test"
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 100
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv = srv
	// Owned by the ipSink: ends when the cleanup closes the listener.
	go func() {
		defer close(s.done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		l.Close()
		<-s.done
	})
	return s
}

// Messages returns the accepted messages, oldest first.
func (s *ipSink) Messages() []*testenv.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*testenv.Message(nil), s.msgs...)
}

// Rcpts returns every RCPT TO answered so far, in order.
func (s *ipSink) Rcpts() []rcptEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]rcptEvent(nil), s.rcpts...)
}

// WaitCount waits for n accepted messages; it fails t after timeout.
func (s *ipSink) WaitCount(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(s.Messages()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("ipSink %s: %d of %d messages after %v", s.addr, len(s.Messages()), n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type ipSession struct {
	s     *ipSink
	c     *smtp.Conn
	ip    string
	from  string
	rcpts []string
}

func (ss *ipSession) Reset()        { ss.from, ss.rcpts = "", nil }
func (ss *ipSession) Logout() error { return nil }

func (ss *ipSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.rcpts = from, nil
	return nil
}

func (ss *ipSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	var err error
	if ss.s.reject != nil {
		err = ss.s.reject(ss.ip)
	}
	ss.s.mu.Lock()
	ss.s.rcpts = append(ss.s.rcpts, rcptEvent{IP: ss.ip, Rcpt: to, Time: time.Now(), Rejected: err != nil})
	ss.s.mu.Unlock()
	if err != nil {
		return err
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *ipSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r) // bounded by MaxMessageBytes
	if err != nil {
		return err
	}
	m := &testenv.Message{
		From: ss.from, Rcpts: append([]string(nil), ss.rcpts...), Data: data,
		MessageID: testenv.MessageID(data), RemoteIP: ss.ip, Helo: ss.c.Hostname(), Time: time.Now(),
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, m)
	ss.s.mu.Unlock()
	return nil
}

// TestDisableSourceIP: blk.test's receiver answers Microsoft's S3150
// blocklist reply to v1 (127.0.0.2) only. The pattern list disables v1 for
// blk.test: the recipient is re-routed through v2 at once (no bounce, no
// wait for retry-after), later mail to blk.test goes through v2, mail to
// other.test still uses v1, and after reenable-after v1 is tried for
// blk.test again.
func TestDisableSourceIP(t *testing.T) {
	t.Parallel()
	const (
		reenable = 5 * time.Second
		blocked  = "127.0.0.2" // v1
	)
	s3150 := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Service unavailable, Client host [" + blocked + "] blocked using Spamhaus. (S3150)"}
	dns := startDNS(t)
	blk := startIPSink(t, "127.20.43.1:25", func(ip string) error {
		if ip == blocked {
			return s3150
		}
		return nil
	})
	mxTo(dns, "blk.test", "127.20.43.1")
	other := testenv.StartSink(t, "127.20.43.2:25", testenv.SinkOptions{Hostname: "mx.other.test"})
	mxTo(dns, "other.test", "127.20.43.2")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.43.254"),
		DNS:     []string{dns.Addr()},
		Sources: []testenv.Source{{CIDR: "127.0.0.0/8", Relay: true, DefaultVirtualMTA: "pool-a"}},
		Extra: vmtaTOML("v1") + vmtaTOML("v2") + poolTOML("pool-a", "v1:1", "v2:1") +
			"[[smtp-pattern-list.default]]\nreply = '/S3150/'\naction = \"disable-source-ip\"\n" +
			fmt.Sprintf("reenable-after = %q\n\n", reenable.String()) +
			// retry-after is long: the re-routing must not wait for it.
			"[domain.\"*\"]\nsmtp-pattern-list = \"default\"\nmax-smtp-out = 2\nretry-after = [\"20s\"]\n",
	}.TOML())

	newIn := func() *testenv.Injector { return testenv.NewInjector(d.Addr()) }
	send := func(domain string, from, n int) {
		injectMsgs(t, n, 2, newIn, func(i int) (string, []byte) {
			rcpt := fmt.Sprintf("user%d@%s", from+i, domain)
			return rcpt, testenv.GenMessage(from+i, 300, rcpt)
		})
		if t.Failed() {
			t.FailNow()
		}
	}
	rejections := func() []rcptEvent {
		var out []rcptEvent
		for _, e := range blk.Rcpts() {
			if e.Rejected {
				out = append(out, e)
			}
		}
		return out
	}

	// Phase 1: 10 messages to blk.test; the 1:1 rotation tries v1 for some.
	send("blk.test", 0, 10)
	blk.WaitCount(t, 10, 10*time.Second)
	rej := rejections()
	if len(rej) == 0 {
		t.Fatalf("blk.test's sink never saw v1 (%s): rotation did not use it; RCPTs: %v", blocked, blk.Rcpts())
	}
	t0 := rej[0].Time
	// v1's connections in flight (max-smtp-out 2) may each meet S3150 once.
	if len(rej) > 2 {
		t.Errorf("phase 1: %d S3150 rejections of v1, want at most 2 (one per connection in flight): after the first, v1 is disabled for blk.test", len(rej))
	}
	t.Logf("phase 1: %d S3150 rejections; all 10 delivered %v after the first", len(rej), time.Since(t0).Round(time.Millisecond))

	// Phase 2, while v1 is disabled for blk.test: other.test still gets mail
	// from v1, blk.test only from v2.
	send("other.test", 100, 6)
	send("blk.test", 10, 4)
	other.WaitCount(t, 6, 10*time.Second)
	blk.WaitCount(t, 14, 10*time.Second)
	phase2 := time.Since(t0)
	if phase2 > reenable-time.Second {
		t.Errorf("phase 2 ended %v after the first S3150, too close to reenable-after %v to tell anything (slow host?)", phase2, reenable)
	}
	fromV1 := 0
	for _, m := range other.Messages() {
		if m.RemoteIP == blocked && m.Time.After(t0) && m.Time.Before(t0.Add(reenable)) {
			fromV1++
		}
	}
	if fromV1 == 0 {
		t.Errorf("other.test got no mail from v1 (%s) while v1 was disabled for blk.test only; by IP: %v", blocked, ipsOf(other.Messages()))
	}
	if n := len(rejections()); n != len(rej) {
		t.Errorf("blk.test: %d more S3150 rejections within reenable-after: v1 was tried again while disabled", n-len(rej))
	}

	// Phase 3, after reenable-after: v1 is tried for blk.test again.
	time.Sleep(time.Until(t0.Add(reenable + 500*time.Millisecond)))
	send("blk.test", 20, 4)
	blk.WaitCount(t, 18, 10*time.Second)
	retried := false
	for _, e := range blk.Rcpts() {
		if e.IP == blocked && e.Time.After(t0.Add(reenable)) {
			retried = true
		}
	}
	if !retried {
		t.Errorf("blk.test: v1 (%s) not tried again after reenable-after %v (4 messages through a 1:1 pool); RCPTs since: %v",
			blocked, reenable, since(blk.Rcpts(), t0.Add(reenable)))
	}

	// Everything went through v2 to blk.test, nothing bounced.
	for _, m := range blk.Messages() {
		if m.RemoteIP != "127.0.0.3" || m.Helo != "v2.example.test" {
			t.Errorf("blk.test accepted %v from %s EHLO %q, want 127.0.0.3 (v2)", m.Rcpts, m.RemoteIP, m.Helo)
		}
	}
	const total = 18 + 6
	dRows := d.WaitAcct(t, testenv.OfType("d"), total, 10*time.Second)
	all := d.Acct()
	if b := testenv.Filter(all, testenv.OfType("b")); len(b) > 0 {
		t.Errorf("%d b rows, want none (S3150 re-routes, it does not bounce):\n%s", len(b), dump(b[:min(5, len(b))]))
	}
	tRows := testenv.Filter(all, testenv.OfType("t"))
	if len(tRows) != len(rejections()) {
		t.Errorf("%d t rows, want one per S3150 rejection (%d):\n%s", len(tRows), len(rejections()), dump(tRows))
	}
	t.Logf("%d S3150 rejections in all (%d after reenable-after), %d t rows, %d d rows; other.test by IP: %v",
		len(rejections()), len(since(rejections(), t0.Add(reenable))), len(tRows), len(dRows), ipsOf(other.Messages()))
	delivered := map[string]testenv.Record{}
	for _, r := range dRows {
		delivered[strings.ToLower(r["rcpt"])] = r
		if strings.HasSuffix(r["rcpt"], "@blk.test") && (r["vmta"] != "v2" || r["dlvSourceIp"] != "127.0.0.3") {
			t.Errorf("d row for %s: vmta %q dlvSourceIp %q, want v2 127.0.0.3", r["rcpt"], r["vmta"], r["dlvSourceIp"])
		}
		if r["vmtaPool"] != "pool-a" {
			t.Errorf("d row for %s: vmtaPool %q, want pool-a", r["rcpt"], r["vmtaPool"])
		}
	}
	if len(delivered) != total {
		t.Errorf("%d recipients delivered, want %d", len(delivered), total)
	}
	for _, r := range tRows {
		if r["vmta"] != "v1" || r["dlvSourceIp"] != blocked || r["vmtaPool"] != "pool-a" ||
			!strings.HasSuffix(r["rcpt"], "@blk.test") || !strings.Contains(r["dsnDiag"], "S3150") {
			t.Errorf("t row: %v; want vmta v1, dlvSourceIp %s, vmtaPool pool-a, a blk.test rcpt, dsnDiag with S3150", r, blocked)
			continue
		}
		dr, ok := delivered[strings.ToLower(r["rcpt"])]
		if !ok {
			t.Errorf("t row for %s has no d row", r["rcpt"])
			continue
		}
		tt, err1 := r.Time("timeLogged")
		dt, err2 := dr.Time("timeLogged")
		// retry-after is 20s; re-routing "at once" is well under it (acct
		// times may have whole-second resolution).
		if err1 == nil && err2 == nil && dt.Sub(tt) > 3*time.Second {
			t.Errorf("%s: delivered through v2 %v after the S3150 t row; want at once, not after retry-after", r["rcpt"], dt.Sub(tt))
		}
	}
}

// ipsOf counts messages by source IP.
func ipsOf(msgs []*testenv.Message) map[string]int {
	m := map[string]int{}
	for _, msg := range msgs {
		m[msg.RemoteIP]++
	}
	return m
}

// since returns the events after t.
func since(evs []rcptEvent, t time.Time) []rcptEvent {
	var out []rcptEvent
	for _, e := range evs {
		if e.Time.After(t) {
			out = append(out, e)
		}
	}
	return out
}
