package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// Addresses: clients 127.20.103.x (may relay: careless injectors) and
// 127.20.104.x (may only AUTH: guessers), the daemon on 127.20.104.254, the
// sink on 127.20.105.1, the well-behaved client 127.20.103.250.

// hostile is a raw client for the hostile-client test: it reports errors
// instead of failing the test, since it runs on many goroutines.
type hostile struct {
	c  net.Conn
	br *bufio.Reader
}

func dialHostile(from, addr string) (*hostile, string, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	h := &hostile{c: c, br: bufio.NewReaderSize(c, 8192)}
	g, err := h.reply(10 * time.Second)
	if err != nil {
		c.Close()
		return nil, "", err
	}
	return h, g, nil
}

// reply reads one reply and returns its last line ("" and an error on EOF).
func (h *hostile) reply(timeout time.Duration) (string, error) {
	h.c.SetReadDeadline(time.Now().Add(timeout))
	for n := 0; n < 100; n++ {
		line, err := h.br.ReadString('\n')
		if err != nil {
			return strings.TrimSpace(line), err
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n"), nil
		}
	}
	return "", fmt.Errorf("reply of over 100 lines")
}

func (h *hostile) send(s string) error {
	h.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := h.c.Write([]byte(s))
	return err
}

// cmd sends s and returns the reply line.
func (h *hostile) cmd(s string) string {
	if err := h.send(s); err != nil {
		return "write: " + err.Error()
	}
	r, err := h.reply(10 * time.Second)
	if err != nil {
		return r + " (" + err.Error() + ")"
	}
	return r
}

// closedWithin reports whether the server closes the connection within d
// (reading and discarding whatever it sends first).
func (h *hostile) closedWithin(d time.Duration) bool {
	h.c.SetReadDeadline(time.Now().Add(d))
	_, err := h.br.ReadString(0) // until EOF
	ne, timeout := err.(net.Error)
	return err != nil && !(timeout && ne.Timeout())
}

// peakRSS returns VmHWM of pid in kB.
func peakRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// TestHostileClients runs 1,000 sessions of misbehaving clients against the
// daemon: bare LF, a 1 MB line, NUL bytes, 10,000 RCPTs in one
// transaction, slowloris at a byte a second, half-open connections and
// AUTH guessing. The daemon must stay up with bounded memory, keep serving
// a normal client, limit sessions per IP, throttle AUTH guessing (421 after
// 5 failures) and cut off clients that exceed command-timeout (RFC 5321
// §4.5.3.2.7, shortened to 4 s here).
func TestHostileClients(t *testing.T) {
	t.Parallel()
	const (
		sessions    = 1000
		workers     = 100
		lineTimeout = 4 * time.Second // short, but not so short that a loaded -race client trips it
	)
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.105.1:25", testenv.SinkOptions{})
	mxTo(dns, "hostile.test", "127.20.105.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:        listenAddr(t, "127.20.104.254"),
		MaxSessions:   300,
		ListenTimeout: lineTimeout.String(),
		DNS:           []string{dns.Addr()},
		LogLevel:      "info",
		Sources: []testenv.Source{
			{CIDR: "127.20.103.0/24", Relay: true},
			{CIDR: "127.20.104.0/24", PlainAuth: true},
		},
		Users: []testenv.User{{Name: "injector", Password: "correct-horse-battery"}},
	}.TOML())
	addr := d.Addr()
	relayIP := func(i int) string { return fmt.Sprintf("127.20.103.%d", 1+i%200) }
	authIP := func(i int) string { return fmt.Sprintf("127.20.104.%d", 1+i%200) }

	// The normal client, throughout the attack.
	stop := make(chan struct{})
	var normalErrs []error
	var normalSent, normalWorst atomic.Int64
	var nwg sync.WaitGroup
	nwg.Add(1)
	go func() {
		defer nwg.Done()
		in := testenv.NewInjector(addr)
		in.LocalIP = "127.20.103.250"
		defer in.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			rcpt := fmt.Sprintf("normal%d@hostile.test", i)
			t0 := time.Now()
			if err := in.Send("sender@e2e.test", []string{rcpt}, testenv.GenMessage(i, 1000, rcpt)); err != nil {
				normalErrs = append(normalErrs, err)
				continue
			}
			normalSent.Add(1)
			if took := time.Since(t0); took.Milliseconds() > normalWorst.Load() {
				normalWorst.Store(took.Milliseconds())
			}
		}
	}()

	var (
		mu       sync.Mutex
		problems []string
		kinds    = map[string]int{}
	)
	note := func(kind, problem string) {
		mu.Lock()
		defer mu.Unlock()
		kinds[kind]++
		if problem != "" && len(problems) < 20 {
			problems = append(problems, kind+": "+problem)
		}
	}
	mb := strings.Repeat("a", 1<<20)
	scenarios := []struct {
		name string
		run  func(i int) string // "" when the daemon behaved
	}{
		{"bare-lf", func(i int) string {
			h, _, err := dialHostile(relayIP(i), addr)
			if err != nil {
				return err.Error()
			}
			defer h.c.Close()
			h.cmd("EHLO bare.test\n")
			h.cmd("MAIL FROM:<a@e2e.test>\r\n")
			h.cmd("RCPT TO:<x@hostile.test>\r\n")
			if r := h.cmd("DATA\r\n"); !strings.HasPrefix(r, "354") {
				return "DATA: " + r
			}
			if r := h.cmd("Subject: x\nbare LF\n.\r\n"); strings.HasPrefix(r, "250") {
				return "bare LF message accepted: " + r
			}
			return ""
		}},
		{"long-line", func(i int) string {
			h, _, err := dialHostile(relayIP(i), addr)
			if err != nil {
				return err.Error()
			}
			defer h.c.Close()
			if i%2 == 0 {
				if r := h.cmd("EHLO " + mb + "\r\n"); strings.HasPrefix(r, "250") {
					return "1 MB command accepted"
				}
				return ""
			}
			h.cmd("EHLO long.test\r\n")
			h.cmd("MAIL FROM:<a@e2e.test>\r\n")
			h.cmd("RCPT TO:<x@hostile.test>\r\n")
			h.cmd("DATA\r\n")
			if r := h.cmd("Subject: x\r\n\r\n" + mb + "\r\n.\r\n"); strings.HasPrefix(r, "250") {
				return "1 MB body line accepted"
			}
			return ""
		}},
		{"nul", func(i int) string {
			h, _, err := dialHostile(relayIP(i), addr)
			if err != nil {
				return err.Error()
			}
			defer h.c.Close()
			h.cmd("EHLO n\x00ul.test\r\n")
			h.cmd("EHLO nul.test\r\n")
			h.cmd("MAIL FROM:<a\x00b@e2e.test>\r\n")
			h.cmd("MAIL FROM:<a@e2e.test>\r\n")
			h.cmd("RCPT TO:<x@hostile.test>\r\n")
			h.cmd("DATA\r\n")
			if r := h.cmd("Subject: x\r\n\r\nnul \x00 byte\r\n.\r\n"); strings.HasPrefix(r, "250") {
				return "NUL in body accepted"
			}
			return ""
		}},
		{"10k-rcpts", func(i int) string {
			h, _, err := dialHostile(relayIP(i), addr)
			if err != nil {
				return err.Error()
			}
			defer h.c.Close()
			h.cmd("EHLO many.test\r\n")
			h.cmd("MAIL FROM:<a@e2e.test>\r\n")
			var b bytes.Buffer
			for k := 0; k < 10000; k++ {
				fmt.Fprintf(&b, "RCPT TO:<r%d@hostile.test>\r\n", k)
			}
			b.WriteString("RSET\r\nQUIT\r\n")
			done := make(chan int)
			go func() { // drains replies while we write: owned here
				n := 0
				for {
					if _, err := h.reply(30 * time.Second); err != nil {
						break
					}
					n++
				}
				done <- n
			}()
			h.send(b.String())
			n := <-done
			if n == 0 {
				return "no reply to 10,000 RCPTs"
			}
			return ""
		}},
		{"slowloris", func(i int) string {
			if i%10 != 0 { // a byte a second is slow: only some of these
				return ""
			}
			h, _, err := dialHostile(relayIP(i), addr)
			if err != nil {
				return err.Error()
			}
			defer h.c.Close()
			t0 := time.Now()
			for _, c := range []byte("EHLO slowloris.test\r\n") {
				if h.send(string(c)) != nil {
					break
				}
				select {
				case <-time.After(time.Second):
				case <-stop:
				}
				if time.Since(t0) > lineTimeout+3*time.Second {
					return "still connected after " + time.Since(t0).String()
				}
			}
			if !h.closedWithin(time.Second) {
				return "not closed after command-timeout"
			}
			return ""
		}},
		{"half-open", func(i int) string {
			h, _, err := dialHostile(relayIP(i), addr)
			if err != nil {
				return err.Error()
			}
			defer h.c.Close()
			if i%2 == 0 {
				h.send("EHLO half") // never finished, then our side closes for writing
				h.c.(*net.TCPConn).CloseWrite()
				if !h.closedWithin(lineTimeout + 3*time.Second) {
					return "half-closed session not ended"
				}
				return ""
			}
			if !h.closedWithin(lineTimeout + 3*time.Second) { // connects and says nothing
				return "silent session not ended after command-timeout"
			}
			return ""
		}},
		{"auth-guess", func(i int) string {
			h, _, err := dialHostile(authIP(i), addr)
			if err != nil {
				return err.Error()
			}
			defer h.c.Close()
			h.cmd("EHLO guess.test\r\n")
			for k := 0; k < 8; k++ {
				cred := base64.StdEncoding.EncodeToString([]byte("\x00injector\x00guess" + strconv.Itoa(k)))
				r := h.cmd("AUTH PLAIN " + cred + "\r\n")
				switch {
				case strings.HasPrefix(r, "235"):
					return "guessed password accepted"
				case strings.HasPrefix(r, "421"):
					if !h.closedWithin(2 * time.Second) {
						return "421 without closing"
					}
					return ""
				}
			}
			return "8 failed AUTH attempts without 421"
		}},
	}

	// Per-IP limit, before the attack loads the machine (the sessions must
	// be held within command-timeout): 25 from one address, 5 refused.
	var held []*hostile
	refused := 0
	for k := 0; k < 25; k++ {
		h, g, err := dialHostile("127.20.104.251", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", k, err)
		}
		if strings.HasPrefix(g, "421 4.7.0") {
			refused++
			h.c.Close()
			continue
		}
		held = append(held, h)
	}
	for _, h := range held {
		h.c.Close()
	}

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= sessions {
					return
				}
				sc := scenarios[i%len(scenarios)]
				note(sc.name, sc.run(i/len(scenarios)*7+i%7))
			}
		}()
	}

	// AUTH throttling outlives the session: a new session from a guessing
	// address is refused at once.
	wg.Wait()
	h, _, err := dialHostile(authIP(6), addr) // an address the auth-guess sessions used
	if err != nil {
		t.Fatal(err)
	}
	h.cmd("EHLO again.test\r\n")
	throttled := h.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00injector\x00correct-horse-battery")) + "\r\n")
	h.c.Close()
	close(stop)
	nwg.Wait()
	took := time.Since(start)

	if !d.Running() {
		t.Fatalf("the daemon died:\n%s", d.LogTail(30))
	}
	rss := peakRSS(t, d.Pid())
	t.Logf("%d hostile sessions in %v: %v; peak RSS %d MB; normal client: %d sent, worst %d ms, %d errors",
		sessions, took.Round(time.Millisecond), kinds, rss/1024, normalSent.Load(), normalWorst.Load(), len(normalErrs))
	for _, p := range problems {
		t.Error(p)
	}
	if refused != 5 {
		t.Errorf("%d of 25 sessions from one address refused with 421 4.7.0, want 5 (max-sessions-per-ip 20)", refused)
	}
	if !strings.HasPrefix(throttled, "421") {
		t.Errorf("AUTH from an address with 5 recent failures: %q, want 421 even with the right password", throttled)
	}
	if len(normalErrs) > 0 || normalSent.Load() == 0 {
		t.Errorf("normal client: %d sent, errors %v", normalSent.Load(), normalErrs)
	}
	limit := 400 << 10 // kB; the race detector multiplies memory use
	if daemonRace() {
		limit = 2 << 20
	}
	if rss > limit {
		t.Errorf("peak RSS %d MB, want at most %d MB", rss/1024, limit/1024)
	}
	sink.WaitCount(t, int(normalSent.Load()), 30*time.Second)
}

// daemonRace reports whether testenv built the daemon with -race.
func daemonRace() bool {
	switch os.Getenv("SLUICE_E2E_RACE") {
	case "0":
		return false
	case "1":
		return true
	}
	return testRace
}
