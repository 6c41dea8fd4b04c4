package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// The traffic-shaping tests (issue 5) use 127.20.50.0/24 … 127.20.59.0/24,
// one per test, and redis-server on 127.0.0.1 and free ports.

// redisProc is a redis-server this file starts itself, so that a test can
// kill it and start it again on the same port.
type redisProc struct {
	t    *testing.T
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// startRedisProc runs redis-server without persistence on 127.0.0.1 and a
// free port until the test ends.
func startRedisProc(t *testing.T) *redisProc {
	t.Helper()
	r := &redisProc{
		t:    t,
		bin:  testenv.RequireTool(t, "redis-server", "/usr/bin/redis-server"),
		dir:  t.TempDir(),
		port: testenv.FreePort(t, "127.0.0.1"),
	}
	t.Cleanup(r.kill)
	r.start()
	return r
}

// Addr returns "127.0.0.1:port".
func (r *redisProc) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL returns the redis:// URL of database 0.
func (r *redisProc) URL() string { return "redis://" + r.Addr() + "/0" }

// start launches the server and waits until it accepts connections.
func (r *redisProc) start() {
	r.t.Helper()
	cmd := exec.Command(r.bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	// Owned by redisProc: ends when kill (or cleanup) kills the process.
	go func() {
		cmd.Wait()
		close(done)
	}()
	testenv.WaitListening(r.t, r.Addr(), 5*time.Second)
}

// kill sends SIGKILL and waits for the process to be gone; it is a no-op
// when the server is not running.
func (r *redisProc) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd, r.done = nil, nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// connTracker is a TCP proxy in front of a sink that records when each
// connection opens and closes (at the client's QUIT, or when either side
// ends it), so that a test can read the concurrency in
// a time window (Sink.MaxConcurrent only knows the whole run).
type connTracker struct {
	Addr   string
	target string
	l      net.Listener
	wg     sync.WaitGroup // the accept loop and every proxied connection

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	events []connEvent
}

type connEvent struct {
	at    time.Time
	delta int // +1 opened, -1 closed
}

// startConnTracker listens on listen and forwards to target until the test
// ends.
func startConnTracker(t *testing.T, listen, target string) *connTracker {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("tracker listen %s: %v", listen, err)
	}
	c := &connTracker{Addr: l.Addr().String(), target: target, l: l, conns: map[net.Conn]struct{}{}}
	c.wg.Add(1)
	go c.acceptLoop()
	t.Cleanup(c.Close)
	return c
}

// Close stops the proxy, closes its connections and waits for its
// goroutines; it is idempotent.
func (c *connTracker) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		c.l.Close()
		for nc := range c.conns {
			nc.Close()
		}
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *connTracker) track(nc net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.conns[nc] = struct{}{}
	return true
}

func (c *connTracker) untrack(nc net.Conn) {
	c.mu.Lock()
	delete(c.conns, nc)
	c.mu.Unlock()
}

func (c *connTracker) note(delta int) {
	c.mu.Lock()
	c.events = append(c.events, connEvent{at: time.Now(), delta: delta})
	c.mu.Unlock()
}

func (c *connTracker) acceptLoop() {
	defer c.wg.Done()
	for {
		client, err := c.l.Accept()
		if err != nil {
			return
		}
		c.note(+1)
		if !c.track(client) {
			client.Close()
			c.note(-1)
			return
		}
		c.wg.Add(1)
		go c.serve(client)
	}
}

// serve pumps bytes both ways; the connection counts as closed as soon as
// either side ends it.
func (c *connTracker) serve(client net.Conn) {
	defer c.wg.Done()
	var once sync.Once
	closed := func() { once.Do(func() { c.note(-1) }) }
	defer closed()
	defer c.untrack(client)
	defer client.Close()
	server, err := net.DialTimeout("tcp", c.target, 5*time.Second)
	if err != nil {
		return
	}
	if !c.track(server) {
		server.Close()
		return
	}
	defer c.untrack(server)
	defer server.Close()
	ended := make(chan struct{}, 2)
	pump := func(dst, src net.Conn, inspect func([]byte)) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				inspect(buf[:n])
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		closed()
		dst.Close()
		src.Close()
		ended <- struct{}{}
	}
	// The client's QUIT ends the connection as far as its limit goes: the
	// daemon frees its slot only after the reply, so counting it closed
	// here never overlaps it with the connection that takes the slot next.
	tail := []byte("\n") // the start of the stream is the start of a line
	go pump(server, client, func(b []byte) {
		tail = append(tail, b...)
		if bytes.Contains(bytes.ToUpper(tail), []byte("\nQUIT\r\n")) {
			closed()
		}
		if len(tail) > 8 {
			tail = append(tail[:0], tail[len(tail)-8:]...)
		}
	})
	go pump(client, server, func([]byte) {})
	<-ended
	<-ended
}

// maxBetween returns the most connections open at once between from and
// to, counting those already open at from.
func (c *connTracker) maxBetween(from, to time.Time) int {
	c.mu.Lock()
	ev := slices.Clone(c.events)
	c.mu.Unlock()
	slices.SortStableFunc(ev, func(a, b connEvent) int { return a.at.Compare(b.at) })
	active, most, started := 0, 0, false
	for _, e := range ev {
		if e.at.After(to) {
			break
		}
		if !started && !e.at.Before(from) {
			started, most = true, active // open at from
		}
		active += e.delta
		if started {
			most = max(most, active)
		}
	}
	if !started {
		most = active // nothing happened in the window
	}
	return most
}

// maxInWindow returns the most timestamps within any half-open window of
// length w.
func maxInWindow(times []time.Time, w time.Duration) int {
	ts := slices.Clone(times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	most, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

// steadyRate returns the rate, per second, of the timestamps after skip
// from the first one, and how many it counted.
func steadyRate(times []time.Time, skip time.Duration) (float64, int) {
	ts := slices.Clone(times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	if len(ts) == 0 {
		return 0, 0
	}
	start := ts[0].Add(skip)
	i, _ := slices.BinarySearchFunc(ts, start, func(a, b time.Time) int { return a.Compare(b) })
	ts = ts[i:]
	if len(ts) < 2 {
		return 0, len(ts)
	}
	return float64(len(ts)-1) / ts[len(ts)-1].Sub(ts[0]).Seconds(), len(ts)
}

// sinkTimes returns when the sink accepted each message, optionally only
// those whose Message-ID is in ids.
func sinkTimes(s *testenv.Sink, ids map[string]bool) []time.Time {
	var ts []time.Time
	for _, m := range s.Messages() {
		if ids == nil || ids[m.MessageID] {
			ts = append(ts, m.Time)
		}
	}
	return ts
}

// idSet makes a set of Message-IDs.
func idSet(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// checkDeliveredOnce waits until every id arrived at the sink and fails t
// for any that is missing or arrived more than once.
func checkDeliveredOnce(t *testing.T, s *testenv.Sink, ids []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.MessageIDs()
		missing, dup := 0, 0
		for _, id := range ids {
			switch n := got[id]; {
			case n == 0:
				missing++
			case n > 1:
				dup++
			}
		}
		if missing == 0 {
			if dup > 0 {
				t.Errorf("%d of %d messages arrived more than once", dup, len(ids))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted messages not delivered after %v (%d duplicated); sink holds %d",
				missing, len(ids), timeout, dup, s.Count())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// redisTOML renders a [redis] table.
func redisTOML(url string, expectedNodes int) string {
	return fmt.Sprintf("[redis]\nurl = %q\nexpected-nodes = %d\n", url, expectedNodes)
}

// pauses describes the gaps longer than min between consecutive messages.
func pauses(msgs []*testenv.Message, min time.Duration) string {
	var out []string
	for i := 1; i < len(msgs); i++ {
		if g := msgs[i].Time.Sub(msgs[i-1].Time); g > min {
			out = append(out, fmt.Sprintf("%v after message %d (+%v), connection %d → %d",
				g.Round(time.Millisecond), i, msgs[i-1].Time.Sub(msgs[0].Time).Round(time.Millisecond),
				msgs[i-1].ConnID, msgs[i].ConnID))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}

// spanOf renders the first and last timeLogged of records.
func spanOf(recs []testenv.Record) string {
	if len(recs) == 0 {
		return "no rows"
	}
	return fmt.Sprintf("%d rows, %s … %s", len(recs), recs[0]["timeLogged"], recs[len(recs)-1]["timeLogged"])
}
