package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestCrashSafety kills the daemon with SIGKILL while it accepts and
// delivers, restarts it on the same spool, and checks that every message it
// acknowledged with 250 reaches the sink (RFC 5321 §6.1), with duplicates
// bounded by what can be in flight at the moment of the kill.
func TestCrashSafety(t *testing.T) {
	const (
		total      = 2000
		clients    = 8
		killAfter  = total / 2
		maxOut     = 4
		msgPerConn = 10
	)
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.6.1:25", testenv.SinkOptions{})
	mxTo(dns, "crash.test", "127.20.6.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.6.254"),
		DNS:    []string{dns.Addr()},
		Domains: map[string]testenv.Domain{
			"*": {MaxSMTPOut: maxOut, MaxMsgPerConnection: msgPerConn, RetryAfter: []string{"1s"}},
		},
	}.TOML())

	var (
		mu     sync.Mutex
		acked  []string
		nAcked atomic.Int64
		killed atomic.Bool
		next   atomic.Int64
		wg     sync.WaitGroup
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := testenv.NewInjector(d.Addr())
			defer in.Close()
			for !killed.Load() {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				rcpt := fmt.Sprintf("user%d@crash.test", i)
				msg := testenv.GenMessage(i, 1500, rcpt)
				if err := in.Send("sender@e2e.test", []string{rcpt}, msg); err != nil {
					if !killed.Load() {
						t.Errorf("message %d before the kill: %v", i, err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, testenv.MessageID(msg))
				mu.Unlock()
				nAcked.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for nAcked.Load() < killAfter && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	killed.Store(true)
	d.Kill()
	atSinkAtKill := sink.Count()
	wg.Wait()
	mu.Lock()
	ids := append([]string(nil), acked...)
	mu.Unlock()
	if len(ids) < killAfter {
		t.Fatalf("only %d messages acknowledged before the kill", len(ids))
	}
	t.Logf("killed after %d acknowledged; %d at the sink then", len(ids), atSinkAtKill)

	d.Restart()
	deadline = time.Now().Add(45 * time.Second)
	missing := ids
	for len(missing) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		got := sink.MessageIDs()
		missing = missing[:0:0]
		for _, id := range ids {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged messages never arrived after restart, e.g. %v", len(missing), len(ids), missing[:min(5, len(missing))])
	}
	dups := 0
	for _, n := range sink.MessageIDs() {
		if n > 1 {
			dups++
		}
	}
	bound := maxOut*msgPerConn + clients
	t.Logf("all %d acknowledged messages delivered; %d duplicated (bound %d); sink holds %d", len(ids), dups, bound, sink.Count())
	if dups > bound {
		t.Errorf("%d messages delivered twice, more than can be in flight (%d)", dups, bound)
	}
}
