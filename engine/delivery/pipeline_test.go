package delivery

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// probe is a line-aware TCP proxy in front of an SMTP server. For the first
// transaction on each connection it withholds the server's reply to MAIL
// (for up to a second) and records whether the client's RCPT and DATA
// arrived before that reply was forwarded: proof of pipelining. It can also
// remove EHLO keywords from the server's reply.
type probe struct {
	ln     net.Listener
	target string
	strip  map[string]bool

	mu      sync.Mutex
	results []bool // per connection: RCPT and DATA arrived before MAIL's reply
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startProbe(t testing.TB, target string, strip ...string) *probe {
	t.Helper()
	ln, err := net.Listen("tcp", proxyIP+":0")
	must(t, err, "listen probe")
	p := &probe{ln: ln, target: target, strip: map[string]bool{}}
	for _, s := range strip {
		p.strip[s] = true
	}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *probe) addr() string { return p.ln.Addr().String() }

func (p *probe) pipelined() []bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]bool(nil), p.results...)
}

func (p *probe) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
}

func (p *probe) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			client.Close()
			continue
		}
		p.track(client)
		p.track(server)
		pc := &probeConn{p: p, mailIdx: -1, data: make(chan struct{})}
		p.wg.Add(2)
		go pc.clientToServer(client, server)
		go pc.serverToClient(server, client)
	}
}

// probeConn is one proxied connection's state.
type probeConn struct {
	p         *probe
	mu        sync.Mutex
	mailIdx   int // index of the first MAIL among the client's commands
	rcptEarly bool
	dataEarly bool
	mailFwd   bool // the reply to MAIL has been forwarded
	data      chan struct{}
}

func (pc *probeConn) clientToServer(client, server net.Conn) {
	defer pc.p.wg.Done()
	defer server.Close()
	br := bufio.NewReader(client)
	tracking, n := true, 0
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 && tracking {
			verb := strings.ToUpper(line[:min(4, len(line))])
			pc.mu.Lock()
			switch {
			case verb == "MAIL" && pc.mailIdx < 0:
				pc.mailIdx = n
			case verb == "RCPT" && pc.mailIdx >= 0 && !pc.mailFwd:
				pc.rcptEarly = true
			case verb == "DATA" && pc.mailIdx >= 0:
				pc.dataEarly = !pc.mailFwd
				tracking = false
				close(pc.data)
			}
			pc.mu.Unlock()
			n++
		}
		if len(line) > 0 {
			if _, werr := server.Write([]byte(line)); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (pc *probeConn) isMailReply(n int) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.mailIdx >= 0 && n == pc.mailIdx+1 // reply 0 is the greeting
}

func (pc *probeConn) serverToClient(server, client net.Conn) {
	defer pc.p.wg.Done()
	defer client.Close()
	br := bufio.NewReader(server)
	n, start := 0, true
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			isMail := pc.isMailReply(n)
			if start && isMail {
				select { // hold MAIL's reply: does the rest of the group come anyway?
				case <-pc.data:
				case <-time.After(time.Second):
				}
			}
			t := strings.TrimRight(line, "\r\n")
			final := len(t) < 4 || t[3] == ' '
			kw, _, _ := strings.Cut(strings.ToUpper(t[min(4, len(t)):]), " ")
			if final || !pc.p.strip[kw] {
				if _, werr := client.Write([]byte(line)); werr != nil {
					return
				}
			}
			start = final
			if final {
				if isMail {
					pc.mu.Lock()
					pc.mailFwd = true
					res := pc.rcptEarly && pc.dataEarly
					pc.mu.Unlock()
					pc.p.mu.Lock()
					pc.p.results = append(pc.p.results, res)
					pc.p.mu.Unlock()
				}
				n++
			}
		}
		if err != nil {
			return
		}
	}
}

// TestPipeliningProof checks on the wire that MAIL, RCPT and DATA go out
// together when PIPELINING is advertised and in lock-step when it is not.
func TestPipeliningProof(t *testing.T) {
	t.Parallel()
	goSMTP := func(t *testing.T) string { return startGoSMTP(t, &sink{}, nil) }
	sinkAt := func(addr string, flags ...string) func(t *testing.T) string {
		return func(t *testing.T) string { smtpSink(t, addr, flags...); return addr }
	}
	cases := []struct {
		name    string
		server  func(t *testing.T) string
		strip   []string
		wantPip bool
	}{
		{"go-smtp", goSMTP, nil, true},
		{"go-smtp-without-PIPELINING", goSMTP, []string{"PIPELINING"}, false},
		{"smtp-sink", sinkAt("127.10.0.5:2525"), nil, true},
		{"smtp-sink-p", sinkAt("127.10.0.6:2525", "-p"), nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProbe(t, tc.server(t), tc.strip...)
			c := dialT(t, p.addr(), testConfig())
			if c.Has("PIPELINING") != tc.wantPip {
				t.Fatalf("Has(PIPELINING) = %v, want %v (extensions %v)", !tc.wantPip, tc.wantPip, c.Extensions())
			}
			env := Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "x@dst.test"}, {Addr: "y@dst.test"}}}
			for i := range 2 {
				res, err := c.Send(context.Background(), env, []byte("Subject: hi\r\n\r\nbody\r\n"))
				must(t, err, fmt.Sprintf("Send %d", i))
				for j, r := range res {
					wantReply(t, fmt.Sprintf("send %d rcpt %d", i, j), r, 250, r.Status.String())
				}
			}
			must(t, c.Quit(), "Quit")
			if got := p.pipelined(); len(got) != 1 || got[0] != tc.wantPip {
				t.Fatalf("RCPT+DATA before MAIL reply: %v, want [%v]", got, tc.wantPip)
			}
		})
	}
}

// TestSmtpSink50 delivers 50 messages over one connection to Postfix's
// smtp-sink and checks the sink's own counter.
func TestSmtpSink50(t *testing.T) {
	t.Parallel()
	const addr = "127.10.0.4:2525"
	count := smtpSink(t, addr)
	c := dialT(t, addr, testConfig())
	body := []byte("From: a@src.test\r\nSubject: n\r\n\r\n.leading dot\r\nline\r\n")
	for i := range 50 {
		env := Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: fmt.Sprintf("r%d@dst.test", i)}}, Body8Bit: true, EnvID: fmt.Sprint("id", i), Ret: "HDRS"}
		res, err := c.Send(context.Background(), env, body)
		must(t, err, fmt.Sprint("Send ", i))
		wantReply(t, fmt.Sprint("msg ", i), res[0], 250, "2.0.0")
	}
	if c.Sent() != 50 {
		t.Fatalf("Sent() = %d, want 50", c.Sent())
	}
	must(t, c.Quit(), "Quit")
	eventually(t, "smtp-sink to count 50 messages", func() bool { return count() == 50 })
}

// TestHELOFallback talks to smtp-sink -e, which refuses EHLO: Dial falls
// back to HELO, and Send goes lock-step without extensions.
func TestHELOFallback(t *testing.T) {
	t.Parallel()
	const addr = "127.10.0.7:2525"
	count := smtpSink(t, addr, "-e")
	c := dialT(t, addr, testConfig())
	if len(c.Extensions()) != 0 {
		t.Fatalf("Extensions() = %v after HELO", c.Extensions())
	}
	res, err := c.Send(context.Background(), Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "b@dst.test", Notify: "NEVER"}}, EnvID: "x"}, []byte("x\r\n"))
	must(t, err, "Send")
	wantReply(t, "rcpt", res[0], 250, "2.0.0")
	must(t, c.Quit(), "Quit")
	eventually(t, "smtp-sink to count 1 message", func() bool { return count() == 1 })
}

// TestServer421 uses smtp-sink -Q RCPT, which answers RCPT with 421 and
// hangs up: recipients get the 421 and the Conn is reported unusable.
func TestServer421(t *testing.T) {
	t.Parallel()
	const addr = "127.10.0.8:2525"
	smtpSink(t, addr, "-Q", "RCPT")
	c := dialT(t, addr, testConfig())
	res, err := c.Send(context.Background(), Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "b@dst.test"}, {Addr: "c@dst.test"}}}, []byte("x\r\n"))
	if err == nil {
		t.Fatal("Send after 421: err == nil")
	}
	wantReply(t, "err", asReply(t, err), 421, "4.0.0")
	for i, r := range res {
		if r == nil || !r.Temporary() {
			t.Fatalf("rcpt %d: %v, want a temporary reply", i, r)
		}
	}
	if _, err := c.Send(context.Background(), Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "b@dst.test"}}}, nil); err == nil {
		t.Fatal("Send on a dropped Conn: err == nil")
	}
}
