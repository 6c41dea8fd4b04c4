package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestGracefulShutdown: on SIGTERM the daemon stops accepting, lets the
// transaction in flight finish (its `d` is logged), exits 0, and leaves the
// rest in the spool; after a restart the rest is delivered, each message
// once.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.10.1:25", testenv.SinkOptions{Delay: 2 * time.Second})
	mxTo(dns, "gs.test", "127.20.10.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:          listenAddr(t, "127.20.10.254"),
		DNS:             []string{dns.Addr()},
		ShutdownTimeout: "20s",
		Domains:         map[string]testenv.Domain{"*": {MaxSMTPOut: 1, MaxMsgPerConnection: testenv.Unlimited}},
	}.TOML())

	const n = 5
	ids := map[string]bool{}
	for i := 0; i < n; i++ {
		ids[sendOne(t, d.Addr(), fmt.Sprintf("r%d@gs.test", i))] = true
	}
	// One connection, 2 s per message: the first is in flight now.
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	d.Stop() // SIGTERM; fails the test unless the exit status is 0
	took := time.Since(t0)
	if took < time.Second {
		t.Errorf("stopped after %v: did not wait for the transaction in flight", took)
	}
	delivered := testenv.Filter(d.Acct(), testenv.OfType("d"))
	if len(delivered) == 0 || len(delivered) == n {
		t.Fatalf("%d of %d delivered before the stop, want some but not all", len(delivered), n)
	}
	if got := sink.Count(); got != len(delivered) {
		t.Errorf("sink has %d messages, acct %d d rows", got, len(delivered))
	}
	t.Logf("stopped in %v with %d of %d delivered", took.Round(time.Millisecond), len(delivered), n)

	d.Restart()
	d.WaitAcct(t, testenv.OfType("d"), n, 30*time.Second)
	got := sink.MessageIDs()
	for id := range ids {
		if got[id] != 1 {
			t.Errorf("message %s at the sink %d times, want 1", id, got[id])
		}
	}
}
