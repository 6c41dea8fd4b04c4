package listener

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/spool"
)

// memSpool is a recording Spooler for the listener's own seam.
type memSpool struct {
	mu     sync.Mutex
	n      int
	msgs   []*spool.Message
	bodies [][]byte
	fail   error
}

func (m *memSpool) NewID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	return fmt.Sprintf("ID%04d", m.n)
}

func (m *memSpool) Put(_ context.Context, msg *spool.Message, body []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.msgs = append(m.msgs, msg)
	m.bodies = append(m.bodies, append([]byte(nil), body...))
	return nil
}

type nopQueue struct{}

func (nopQueue) Enqueue(*spool.Message) {}

func prefix(s string) config.CIDR { return config.CIDR{Prefix: netip.MustParsePrefix(s)} }

// start runs a listener on addr with a relay source for 127.11.0.0/24
// clients bound from 127.11.0.2, and auth (in clear) for 127.11.1.0/24.
func start(t *testing.T, addr string, sp *memSpool, mod func(*Options)) string {
	t.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte("hashed-pw"), bcrypt.MinCost)
	opts := Options{
		Hostname: "mta.test",
		Sources: []config.Source{
			{CIDR: prefix("127.11.0.0/24"), AlwaysAllowRelaying: true, ProcessXJob: true, ProcessXVirtualMTA: true, MaxMessageSize: 64 << 10},
			{CIDR: prefix("127.11.1.0/24"), AllowUnencryptedPlainAuth: true},
		},
		Users:     []config.SMTPUser{{Name: "campaigns", Password: "s3cret"}, {Name: "hashed", Password: string(hash)}},
		Spool:     sp,
		Queue:     nopQueue{},
		Log:       zap.NewNop(),
		AuthDelay: 300 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	lc := []config.Listener{{Address: addr, MaxSessions: 4}}
	s, err := New(lc, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(lc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s.Addrs()[0].String()
}

type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, from, addr string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	cl.expect("220")
	cl.cmd("EHLO client.test", "250")
	return cl
}

// read returns the whole (possibly multi-line) reply.
func (c *client) read() string {
	c.t.Helper()
	var all []string
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply: %v (so far %q)", err, all)
		}
		all = append(all, strings.TrimRight(line, "\r\n"))
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(all, "\n")
		}
	}
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	r := c.read()
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("got %q, want prefix %q", r, prefix)
	}
	return r
}

func (c *client) cmd(line, want string) string {
	c.t.Helper()
	fmt.Fprintf(c.c, "%s\r\n", line)
	return c.expect(want)
}

func (c *client) data(body, want string) string {
	c.t.Helper()
	c.cmd("DATA", "354")
	fmt.Fprint(c.c, body+".\r\n")
	return c.expect(want)
}

func TestAcceptRewritesHeaders(t *testing.T) {
	sp := &memSpool{}
	addr := start(t, "127.11.0.1:0", sp, nil)
	c := dial(t, "127.11.0.2", addr)
	c.cmd("MAIL FROM:<sender@example.test> RET=HDRS ENVID=env42", "250")
	c.cmd("RCPT TO:<a@d1.test> NOTIFY=FAILURE ORCPT=rfc822;orig@d1.test", "250")
	c.cmd("RCPT TO:<b@d2.test>", "250")
	c.data("Subject: hi\r\nX-Job: job-7\r\nX-Virtual-MTA: pool1\r\n\r\nbody\r\n", "250")
	if len(sp.msgs) != 1 {
		t.Fatalf("spooled %d messages", len(sp.msgs))
	}
	m, body := sp.msgs[0], string(sp.bodies[0])
	if m.Env.JobID != "job-7" || m.Env.VMTA != "pool1" || m.Env.EnvID != "env42" || m.Env.Ret != "HDRS" || m.Env.From != "sender@example.test" {
		t.Errorf("envelope = %+v", m.Env)
	}
	if len(m.Rcpts) != 2 || m.Rcpts[0].Notify != "FAILURE" || m.Rcpts[0].ORcpt != "rfc822;orig@d1.test" {
		t.Errorf("rcpts = %+v", m.Rcpts)
	}
	for _, want := range []string{"Received: from client.test ([127.11.0.2])", "Message-ID: <ID0001@mta.test>", "Subject: hi\r\n\r\nbody\r\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "X-Job") || strings.Contains(body, "X-Virtual-MTA") {
		t.Errorf("X- headers not stripped:\n%s", body)
	}
	if m.Env.Size != int64(len(body)) {
		t.Errorf("size %d, body %d", m.Env.Size, len(body))
	}
}

func TestRelayAndAuth(t *testing.T) {
	sp := &memSpool{}
	addr := start(t, "127.11.0.1:0", sp, nil)

	c := dial(t, "127.11.1.2", addr) // auth source, no relaying
	c.cmd("MAIL FROM:<s@example.test>", "250")
	c.cmd("RCPT TO:<a@d1.test>", "550 5.7.1")

	plain := func(u, p string) string { return base64.StdEncoding.EncodeToString([]byte("\x00" + u + "\x00" + p)) }
	c = dial(t, "127.11.1.2", addr)
	t0 := time.Now()
	c.cmd("AUTH PLAIN "+plain("campaigns", "wrong"), "535 5.7.8")
	if d := time.Since(t0); d < 250*time.Millisecond {
		t.Errorf("failed AUTH answered after %v, want a delay", d)
	}
	c.cmd("AUTH PLAIN "+plain("campaigns", "s3cret"), "235")
	c.cmd("MAIL FROM:<s@example.test>", "250")
	c.cmd("RCPT TO:<a@d1.test>", "250")
	c.data("Subject: x\r\n\r\nx\r\n", "250")

	c = dial(t, "127.11.1.3", addr)
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("hashed")), "334 UGFzc3dvcmQ6")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("hashed-pw")), "235")

	// An unknown client gets no AUTH in clear text and may not relay.
	c = dial(t, "127.11.2.2", addr)
	c.cmd("AUTH PLAIN "+plain("campaigns", "s3cret"), "538 5.7.11")
	c.cmd("MAIL FROM:<s@example.test>", "250")
	c.cmd("RCPT TO:<a@d1.test>", "550 5.7.1")
}

func TestBadInput(t *testing.T) {
	sp := &memSpool{}
	addr := start(t, "127.11.0.1:0", sp, nil)
	cases := []struct {
		name, body, want string
	}{
		{"bare LF", "Subject: x\n\nbody\r\n", "554 5.6.0"},
		{"bare CR", "Subject: x\r\n\rbody\r\n", "554 5.6.0"},
		{"NUL", "Subject: x\r\n\r\nbo\x00dy\r\n", "554 5.6.0"},
		{"long line", "Subject: x\r\n\r\n" + strings.Repeat("a", 1000) + "\r\n", "554 5.6.0"},
		{"oversized", "Subject: x\r\n\r\n" + strings.Repeat(strings.Repeat("b", 100)+"\r\n", 700), "552 5.3.4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, "127.11.0.3", addr)
			c.cmd("MAIL FROM:<s@example.test>", "250")
			c.cmd("RCPT TO:<a@d1.test>", "250")
			c.data(tc.body, tc.want)
			// The session goes on.
			c.cmd("MAIL FROM:<s@example.test>", "250")
			c.cmd("RCPT TO:<a@d1.test>", "250")
			c.data("Subject: ok\r\n\r\nok\r\n", "250")
		})
	}
	// A 1 MB line: a clear error, then the session ends; new ones work.
	c := dial(t, "127.11.0.3", addr)
	c.cmd("MAIL FROM:<s@example.test>", "250")
	c.cmd("RCPT TO:<a@d1.test>", "250")
	c.data("Subject: x\r\n\r\n"+strings.Repeat("a", 1<<20)+"\r\n", "554 5.6.0")

	c = dial(t, "127.11.0.3", addr)
	c.cmd("MAIL FROM:<s@example.test> SIZE=100000", "552 5.3.4")
	for _, bad := range []string{"MAIL FROM:<foo@>", "MAIL FROM:<@@>", "MAIL FROM:<a b@c.test>", "MAIL FROM:<x@-bad-.test>"} {
		r := c.cmd(bad, "5")
		if !strings.HasPrefix(r, "553") && !strings.HasPrefix(r, "501") {
			t.Errorf("%s: %q, want 553 or 501", bad, r)
		}
	}
	c.cmd("MAIL FROM:<s@example.test>", "250")
	for _, bad := range []string{"RCPT TO:<nodomain>", "RCPT TO:<a@b..test>", "RCPT TO:<a\x00b@c.test>", "RCPT TO:<>"} {
		r := c.cmd(bad, "5")
		if !strings.HasPrefix(r, "553") && !strings.HasPrefix(r, "501") && !strings.HasPrefix(r, "500") {
			t.Errorf("%q: %q, want 5xx syntax error", bad, r)
		}
	}
}

func TestSpoolErrorIsTemporary(t *testing.T) {
	sp := &memSpool{fail: fmt.Errorf("pebble: write /var/spool/x: no space left on device")}
	addr := start(t, "127.11.0.1:0", sp, nil)
	c := dial(t, "127.11.0.4", addr)
	c.cmd("MAIL FROM:<s@example.test>", "250")
	c.cmd("RCPT TO:<a@d1.test>", "250")
	r := c.data("Subject: x\r\n\r\nx\r\n", "451 4.3.0")
	if strings.Contains(r, "/var/spool") || strings.Contains(r, "pebble") {
		t.Errorf("reply leaks internals: %q", r)
	}
}

func TestSessionLimit(t *testing.T) {
	addr := start(t, "127.11.0.1:0", &memSpool{}, nil)
	for i := 0; i < 4; i++ {
		dial(t, "127.11.0.5", addr)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.3.2") {
		t.Fatalf("5th session got %q, want 421 4.3.2", line)
	}
}

func TestShutdownFinishesDataAndEndsIdleSessions(t *testing.T) {
	sp := &memSpool{}
	lc := []config.Listener{{Address: "127.11.0.1:0", MaxSessions: 10}}
	s, err := New(lc, Options{
		Hostname: "mta.test",
		Sources:  []config.Source{{CIDR: prefix("127.11.0.0/24"), AlwaysAllowRelaying: true}},
		Spool:    sp, Queue: nopQueue{}, Log: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(lc); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0].String()

	idle := dial(t, "127.11.0.6", addr)
	busy := dial(t, "127.11.0.7", addr)
	busy.cmd("MAIL FROM:<s@example.test>", "250")
	busy.cmd("RCPT TO:<a@d1.test>", "250")
	busy.cmd("DATA", "354")
	fmt.Fprint(busy.c, "Subject: half\r\n\r\n") // the body is still coming

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan struct{})
	t0 := time.Now()
	go func() { s.Shutdown(ctx); close(stopped) }()

	// The idle session is told 421 and closed promptly.
	if r := idle.read(); !strings.HasPrefix(r, "421") {
		t.Errorf("idle session got %q, want 421", r)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("idle session ended after %v", d)
	}
	// New connections are refused.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("listener still accepts during shutdown")
	}
	// The transaction in DATA completes and is acknowledged.
	time.Sleep(200 * time.Millisecond)
	fmt.Fprint(busy.c, "rest of body\r\n.\r\n")
	busy.expect("250")
	<-stopped
	if len(sp.msgs) != 1 {
		t.Fatalf("spooled %d messages, want 1", len(sp.msgs))
	}
}

type knownSet map[string]bool

func (k knownSet) Known(name string) bool { return name == "" || k[name] }

func TestVirtualMTASelection(t *testing.T) {
	sp := &memSpool{}
	addr := start(t, "127.11.0.1:0", sp, func(o *Options) {
		o.VMTAs = knownSet{"v1": true, "pool-a": true, "pool-u": true}
		o.Users[0].DefaultVirtualMTA = "pool-u"
		o.Sources[1].DefaultVirtualMTA = "pool-a"
	})
	c := dial(t, "127.11.0.2", addr) // relay source, X-Virtual-MTA honoured
	c.cmd("MAIL FROM:<s@example.test>", "250")
	c.cmd("RCPT TO:<a@d1.test>", "250")
	c.data("X-Virtual-MTA: nope\r\nSubject: x\r\n\r\nx\r\n", "550 5.3.5")
	c.cmd("MAIL FROM:<s@example.test>", "250")
	c.cmd("RCPT TO:<a@d1.test>", "250")
	c.data("X-Virtual-MTA: v1\r\nSubject: x\r\n\r\nx\r\n", "250")

	c = dial(t, "127.11.1.2", addr) // auth source with a default pool
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00campaigns\x00s3cret")), "235")
	c.cmd("MAIL FROM:<s@example.test>", "250")
	c.cmd("RCPT TO:<a@d1.test>", "250")
	c.data("X-Virtual-MTA: v1\r\nSubject: x\r\n\r\nx\r\n", "250") // header not honoured here
	if len(sp.msgs) != 2 || sp.msgs[0].Env.VMTA != "v1" || sp.msgs[1].Env.VMTA != "pool-u" {
		for _, m := range sp.msgs {
			t.Logf("VMTA %q", m.Env.VMTA)
		}
		t.Fatalf("VMTA choices wrong")
	}
}

// A BODY=8BITMIME declaration marks the message 8-bit only when its body
// really has 8-bit octets, so 7-bit mail from clients that always declare
// it can still go to receivers without 8BITMIME (RFC 6152 §3).
func TestBody8BitFollowsContent(t *testing.T) {
	sp := &memSpool{}
	addr := start(t, "127.11.0.1:0", sp, nil)
	c := dial(t, "127.11.0.2", addr)
	c.cmd("MAIL FROM:<s@example.test> BODY=8BITMIME", "250")
	c.cmd("RCPT TO:<a@d1.test>", "250")
	c.data("Subject: plain\r\n\r\nascii only\r\n", "250")
	c.cmd("MAIL FROM:<s@example.test> BODY=8BITMIME", "250")
	c.cmd("RCPT TO:<a@d1.test>", "250")
	c.data("Subject: latin\r\n\r\ncaf\xc3\xa9\r\n", "250")
	if len(sp.msgs) != 2 {
		t.Fatalf("spooled %d messages", len(sp.msgs))
	}
	if sp.msgs[0].Env.Body8Bit || !sp.msgs[1].Env.Body8Bit {
		t.Errorf("Body8Bit = %v, %v; want false, true", sp.msgs[0].Env.Body8Bit, sp.msgs[1].Env.Body8Bit)
	}
}
