package sink

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Addresses of these tests: 127.30.20.0/24, port 0.

func TestParseRule(t *testing.T) {
	good := []struct {
		in   string
		dom  string
		want Rule
	}{
		{"gmail.test:2%:421 4.7.28 Try later", "gmail.test", Rule{Pct: 2, Kind: Reply, Code: 421, Text: "4.7.28 Try later"}},
		{"Y.test:1.5:550 5.1.1 no user", "y.test", Rule{Pct: 1.5, Kind: Reply, Code: 550, Text: "5.1.1 no user"}},
		{"*:10%:drop", "*", Rule{Pct: 10, Kind: Drop}},
		{"a.test:5%:garbage", "a.test", Rule{Pct: 5, Kind: Garbage}},
		{"a.test:100%:TARPIT", "a.test", Rule{Pct: 100, Kind: Tarpit}},
	}
	for _, c := range good {
		d, r, err := ParseRule(c.in)
		if err != nil || d != c.dom || r != c.want {
			t.Errorf("ParseRule(%q) = %q, %+v, %v; want %q, %+v", c.in, d, r, err, c.dom, c.want)
		}
	}
	for _, in := range []string{"a.test:5%", "a.test:x%:drop", "a.test:101%:drop", "a.test:5%:explode", "a.test:5%:99 nope", ":5%:drop"} {
		if _, _, err := ParseRule(in); err == nil {
			t.Errorf("ParseRule(%q): no error", in)
		}
	}
}

func start(t *testing.T, opts Options) *Sink {
	t.Helper()
	if opts.Addrs == nil {
		opts.Addrs = []string{"127.30.20.1:0", "127.30.20.2:0"}
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (s *Sink) addr(i int) string { return s.lns[i].Addr().String() }

type client struct {
	t *testing.T
	*textproto.Conn
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := textproto.NewConn(c)
	t.Cleanup(func() { tc.Close() })
	cl := &client{t, tc}
	cl.expect(220)
	cl.cmd(250, "EHLO test")
	return cl
}

func (c *client) expect(code int) string {
	c.t.Helper()
	_, msg, err := c.ReadResponse(code)
	if err != nil {
		c.t.Fatalf("want %d: %v", code, err)
	}
	return msg
}

func (c *client) cmd(code int, format string, args ...any) string {
	c.t.Helper()
	if err := c.PrintfLine(format, args...); err != nil {
		c.t.Fatal(err)
	}
	return c.expect(code)
}

func (c *client) send(mid string, rcpts ...string) {
	c.t.Helper()
	c.cmd(250, "MAIL FROM:<a@s.test>")
	for _, r := range rcpts {
		c.cmd(250, "RCPT TO:<%s>", r)
	}
	c.cmd(354, "DATA")
	w := c.DotWriter()
	fmt.Fprintf(w, "Subject: x\r\nMessage-ID: %s\r\n\r\n.leading dot\r\nbody\r\n", mid)
	w.Close()
	c.expect(250)
}

func TestRecordsAndLog(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "sink.jsonl")
	s := start(t, Options{LogPath: logPath})
	c := dial(t, s.addr(1))
	c.send("<m1@x>", "u@A.test", "v@b.test")
	c.send("<m2@x>", "w@c.test")
	c.cmd(221, "QUIT")
	if st := s.Stats(); st.Messages != 2 || st.Rcpts != 3 || st.Conns != 1 {
		t.Errorf("stats = %+v", st)
	}
	arr := s.Arrivals()
	if len(arr) != 2 || arr["<m1@x>"].IsZero() || arr["<m2@x>"].Before(arr["<m1@x>"]) {
		t.Errorf("arrivals = %v", arr)
	}
	s.Close()
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("log has %d lines:\n%s", len(lines), data)
	}
	var e Entry
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if e.MID != "<m1@x>" || e.Domain != "a.test" || e.Rcpts != 2 || e.Src != "127.0.0.1" || e.Conn != 1 || e.Result != "250" || e.Size < 30 || e.Time.IsZero() {
		t.Errorf("entry = %+v", e)
	}
}

func TestReplyMix(t *testing.T) {
	rules := Rules{}
	for _, r := range []string{"bad.test:100%:550 5.1.1 no such user", "busy.test:100%:421 4.7.28 go away", "half.test:50%:451 4.7.1 later"} {
		if err := rules.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	s := start(t, Options{Rules: rules, Seed: 1})
	c := dial(t, s.addr(0))
	c.cmd(250, "MAIL FROM:<a@s.test>")
	if msg := c.cmd(550, "RCPT TO:<x@bad.test>"); !strings.Contains(msg, "5.1.1") {
		t.Errorf("bad.test reply %q", msg)
	}
	c.cmd(250, "RCPT TO:<x@good.test>")
	c.cmd(250, "RSET")
	temp := 0
	for range 200 {
		c.cmd(250, "MAIL FROM:<a@s.test>")
		c.PrintfLine("RCPT TO:<x@half.test>")
		code, _, _ := c.ReadResponse(0)
		if code == 451 {
			temp++
		}
		c.cmd(250, "RSET")
	}
	if temp < 60 || temp > 140 {
		t.Errorf("half.test: %d of 200 deferred, want about 100", temp)
	}
	c.cmd(250, "MAIL FROM:<a@s.test>")
	c.cmd(421, "RCPT TO:<x@busy.test>")
	if _, err := c.ReadLine(); err == nil {
		t.Error("connection still open after 421")
	}
	if st := s.Stats(); st.Replies["550"] != 1 || st.Replies["421"] != 1 || st.Replies["451"] != int64(temp) {
		t.Errorf("replies = %v", st.Replies)
	}
}

func TestFaults(t *testing.T) {
	rules := Rules{}
	for _, r := range []string{"drop.test:100%:drop", "junk.test:100%:garbage", "slow.test:100%:tarpit"} {
		rules.Add(r)
	}
	s := start(t, Options{Rules: rules, TarpitDelay: 300 * time.Millisecond, Latency: 20 * time.Millisecond})

	body := func(c *client, rcpt string) {
		c.cmd(250, "MAIL FROM:<a@s.test>")
		c.cmd(250, "RCPT TO:<%s>", rcpt)
		c.cmd(354, "DATA")
		w := c.DotWriter()
		fmt.Fprintf(w, "Message-ID: <f@x>\r\n\r\nhi\r\n")
		w.Close()
	}
	c := dial(t, s.addr(0))
	body(c, "x@drop.test")
	if line, err := c.ReadLine(); err == nil {
		t.Errorf("drop: got %q, want the connection closed", line)
	}

	c = dial(t, s.addr(0))
	body(c, "x@junk.test")
	line, err := bufio.NewReader(c.R).ReadString('\n')
	if err != nil || strings.HasPrefix(line, "250") || !strings.Contains(line, "garbage") {
		t.Errorf("garbage: got %q, %v", line, err)
	}

	c = dial(t, s.addr(0))
	t0 := time.Now()
	body(c, "x@slow.test")
	c.expect(250)
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("tarpit: 250 after %v", d)
	}
	st := s.Stats()
	if st.Replies["drop"] != 1 || st.Replies["garbage"] != 1 || st.Replies["tarpit"] != 1 || st.Messages != 1 {
		t.Errorf("stats = %v", st)
	}
}

func TestLatencyPerRoundTrip(t *testing.T) {
	s := start(t, Options{Latency: 50 * time.Millisecond})
	c := dial(t, s.addr(0))
	// Pipelined: MAIL, RCPT, RCPT, DATA in one write are one round trip.
	t0 := time.Now()
	c.W.WriteString("MAIL FROM:<a@s.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
	c.W.Flush()
	for _, code := range []int{250, 250, 250, 354} {
		c.expect(code)
	}
	if d := time.Since(t0); d < 50*time.Millisecond || d > 140*time.Millisecond {
		t.Errorf("pipelined group took %v, want one latency of 50ms", d)
	}
}

func TestLargeBodies(t *testing.T) {
	s := start(t, Options{})
	c := dial(t, s.addr(0))
	for _, n := range []int{0, 1, 65533, 65534, 65535, 65536, 1 << 20} {
		c.cmd(250, "MAIL FROM:<a@s.test>")
		c.cmd(250, "RCPT TO:<x@big.test>")
		c.cmd(354, "DATA")
		w := c.DotWriter()
		fmt.Fprintf(w, "Message-ID: <big%d@x>\r\n\r\n", n)
		line := strings.Repeat("x", 76) + "\r\n"
		body := strings.Repeat(line, n/len(line)+1)[:n]
		w.Write([]byte(body))
		w.Write([]byte("\r\n.dot\r\n"))
		w.Close()
		c.expect(250)
	}
	if st := s.Stats(); st.Messages != 7 || len(s.Arrivals()) != 7 || st.Bytes < 1<<20 {
		t.Errorf("stats %v", st)
	}
}
