package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/bench/sink"
	"github.com/sluice-mta/sluice/engine/testenv"
)

// Addresses: 127.20.106.1 the bench sink (tarpit, drop, garbage),
// .2 a 421-greeting front, .3 a broken-STARTTLS front, .10 the sink behind
// both fronts, .254 the daemon, .253 its pprof.

// faultyFront answers the first `bad` connections with a fault and
// forwards the later ones to target.
type faultyFront struct {
	l      net.Listener
	target string
	bad    int32
	fault  func(c net.Conn)
	seen   atomic.Int32
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func startFront(t *testing.T, addr, target string, bad int32, fault func(net.Conn)) *faultyFront {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &faultyFront{l: l, target: target, bad: bad, fault: fault, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go func() { // owned by f: ends when close closes l
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			if f.closed {
				f.mu.Unlock()
				c.Close()
				return
			}
			f.conns[c] = struct{}{}
			f.wg.Add(1)
			f.mu.Unlock()
			go func() { // owned by f: close closes c
				defer f.wg.Done()
				defer c.Close()
				if f.seen.Add(1) <= f.bad {
					f.fault(c)
					return
				}
				f.forward(c)
			}()
		}
	}()
	t.Cleanup(f.close)
	return f
}

func (f *faultyFront) forward(c net.Conn) {
	s, err := net.Dial("tcp", f.target)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.conns[s] = struct{}{}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { io.Copy(s, c); s.Close(); close(done) }() // ends when either side closes
	io.Copy(c, s)
	c.Close()
	<-done
}

func (f *faultyFront) close() {
	f.mu.Lock()
	f.closed = true
	f.l.Close()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// brokenStartTLS offers STARTTLS, accepts it, then sends bytes that are
// no TLS handshake and closes; a session without STARTTLS (the client's
// plaintext retry) gets 421.
func brokenStartTLS(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "220 broken.test ESMTP\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case strings.HasPrefix(cmd, "EHLO"):
			io.WriteString(c, "250-broken.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 STARTTLS\r\n")
		case cmd == "STARTTLS":
			io.WriteString(c, "220 2.0.0 go ahead\r\n")
			io.WriteString(c, "this is not a TLS ServerHello\r\n")
			return
		default: // the plaintext retry: a temporary refusal
			io.WriteString(c, "421 4.3.0 broken.test try again later\r\n")
			return
		}
	}
}

// goroutines returns the daemon's goroutine count from its pprof endpoint.
func goroutines(t *testing.T, pprofAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatalf("pprof: %v", err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	// "goroutine profile: total 42"
	n, err := strconv.Atoi(strings.TrimSpace(line[strings.LastIndexByte(line, ' ')+1:]))
	if err != nil {
		t.Fatalf("pprof first line %q", line)
	}
	return n
}

// TestMisbehavingReceivers sends mail to receivers that tarpit past the
// data timeout, drop the connection after DATA without a reply, answer
// garbage, greet with 421, or break the STARTTLS handshake. Every message
// must be delivered in the end (retried, never bounced or lost), and the
// daemon's goroutines must come back to where they were: no connection or
// timer is left behind.
func TestMisbehavingReceivers(t *testing.T) {
	t.Parallel()
	const perDomain = 8
	dns := startDNS(t)
	rules := sink.Rules{}
	for _, r := range []string{"tarpit.test:50%:tarpit", "drop.test:50%:drop", "garbage.test:50%:garbage"} {
		if err := rules.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	bs, err := sink.Start(sink.Options{Addrs: []string{"127.20.106.1:25"}, Rules: rules, TarpitDelay: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	good := testenv.StartSink(t, "127.20.106.10:25", testenv.SinkOptions{})
	startFront(t, "127.20.106.2:25", good.Addr, 3, func(c net.Conn) {
		io.WriteString(c, "421 4.3.2 busy.test too busy, try later\r\n")
	})
	startFront(t, "127.20.106.3:25", good.Addr, 3, brokenStartTLS)
	for _, d := range []string{"tarpit.test", "drop.test", "garbage.test"} {
		mxTo(dns, d, "127.20.106.1")
	}
	mxTo(dns, "busy.test", "127.20.106.2")
	mxTo(dns, "tls.test", "127.20.106.3")

	pprofAddr := testenv.FreeAddr(t, "127.20.106.253")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:         listenAddr(t, "127.20.106.254"),
		DNS:            []string{dns.Addr()},
		CommandTimeout: "2s",
		DataTimeout:    "2s",
		Domains:        map[string]testenv.Domain{"*": {RetryAfter: []string{"1s"}, MaxSMTPOut: 4}},
	}.TOML(), testenv.WithArgs("--pprof", pprofAddr))
	time.Sleep(500 * time.Millisecond)
	base := goroutines(t, pprofAddr)

	domains := []string{"tarpit.test", "drop.test", "garbage.test", "busy.test", "tls.test"}
	var ids []string
	for i := 0; i < perDomain*len(domains); i++ {
		ids = append(ids, sendOne(t, d.Addr(), fmt.Sprintf("u%d@%s", i, domains[i%len(domains)])))
	}

	deadline := time.Now().Add(90 * time.Second)
	var missing []string
	for {
		arr := bs.Arrivals()
		at := good.MessageIDs()
		missing = missing[:0]
		for _, id := range ids {
			if _, ok := arr[id]; !ok && at[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	recs := d.Acct()
	if b := testenv.Filter(recs, testenv.OfType("b")); len(b) > 0 {
		t.Errorf("%d bounced, want every fault retried:\n%s", len(b), dump(b))
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d messages never delivered (a queue stuck?), e.g. %s; acct:\n%s",
			len(missing), len(ids), missing[0], dump(testenv.Filter(recs, testenv.OfType("t"))[:min(10, len(testenv.Filter(recs, testenv.OfType("t"))))]))
	}
	deferred := map[string]int{}
	for _, r := range testenv.Filter(recs, testenv.OfType("t")) {
		rc := r["rcpt"]
		deferred[rc[strings.IndexByte(rc, '@')+1:]]++
	}
	t.Logf("all %d delivered; deferrals by domain %v; bench sink %s", len(ids), deferred, bs.Stats())
	for _, dom := range domains {
		if deferred[dom] == 0 {
			t.Errorf("no deferral for %s: the fault did not happen", dom)
		}
	}

	// Goroutines: back to the baseline once idle connections are closed.
	var n int
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if n = goroutines(t, pprofAddr); n <= base+5 {
			break
		}
	}
	t.Logf("goroutines: %d before, %d after", base, n)
	if n > base+5 {
		t.Errorf("goroutines: %d before the faults, %d after: a leak", base, n)
	}
}
