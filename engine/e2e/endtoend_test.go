package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestEndToEnd relays 1,000 messages from 8 clients to 20 domains, each
// with its own MX and sink, and checks every message arrives exactly once
// with a delivered acct row.
func TestEndToEnd(t *testing.T) {
	const (
		domains = 20
		total   = 1000
		clients = 8
	)
	dns := startDNS(t)
	sinks := make([]*testenv.Sink, domains)
	for i := range domains {
		domain := fmt.Sprintf("d%02d.test", i+1)
		ip := fmt.Sprintf("127.20.1.%d", i+1)
		sinks[i] = testenv.StartSink(t, ip+":25", testenv.SinkOptions{Hostname: "mx." + domain})
		mxTo(dns, domain, ip)
	}
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.1.254"),
		DNS:    []string{dns.Addr()},
		Domains: map[string]testenv.Domain{
			"*": {MaxSMTPOut: 4, MaxMsgPerConnection: 100, RetryAfter: []string{"1s"}},
		},
	}.TOML())

	start := time.Now()
	rcpt := func(i int) string { return fmt.Sprintf("user%d@d%02d.test", i, i%domains+1) }
	ids := injectAll(t, d.Addr(), total, clients, 2000, rcpt)
	if len(ids) != total {
		t.Fatalf("%d of %d messages acknowledged", len(ids), total)
	}
	injected := time.Since(start)

	deadline := time.Now().Add(60 * time.Second)
	for count(sinks) < total && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	delivered := time.Since(start)
	got := map[string]int{}
	for i, s := range sinks {
		for _, m := range s.Messages() {
			got[m.MessageID]++
			want := fmt.Sprintf("@d%02d.test", i+1)
			if len(m.Rcpts) != 1 || !strings.HasSuffix(m.Rcpts[0], want) {
				t.Errorf("sink %s got rcpts %v", s.Addr, m.Rcpts)
			}
		}
	}
	missing := 0
	for _, id := range ids {
		if got[id] != 1 {
			missing++
			if missing <= 5 {
				t.Errorf("message %s arrived %d times", id, got[id])
			}
		}
	}
	if missing > 0 || count(sinks) != total {
		t.Fatalf("%d of %d messages not delivered exactly once; sinks hold %d", missing, total, count(sinks))
	}

	recs := d.WaitAcct(t, testenv.OfType("d"), total, 10*time.Second)
	if len(recs) != total {
		t.Errorf("%d d rows, want %d", len(recs), total)
	}
	byRcpt := map[string]testenv.Record{}
	for _, r := range recs {
		byRcpt[r["rcpt"]] = r
	}
	for i := range total {
		r, ok := byRcpt[rcpt(i)]
		if !ok {
			t.Errorf("no d row for %s", rcpt(i))
			continue
		}
		domain := strings.SplitN(rcpt(i), "@", 2)[1]
		wantIP := fmt.Sprintf("127.20.1.%d", i%domains+1)
		if r["queue"] != domain+"/default" || r["dlvDestinationIp"] != wantIP || !strings.HasPrefix(r["dsnStatus"], "2.") {
			t.Errorf("d row for %s: queue %q dlvDestinationIp %q dsnStatus %q", rcpt(i), r["queue"], r["dlvDestinationIp"], r["dsnStatus"])
			break
		}
	}
	all := d.Acct()
	if bad := testenv.Filter(all, testenv.OfType("b", "t")); len(bad) > 0 {
		t.Errorf("%d b/t rows, want none:\n%s", len(bad), dump(bad[:min(5, len(bad))]))
	}
	if r := testenv.Filter(all, testenv.OfType("r")); len(r) != total {
		t.Errorf("%d r rows, want %d", len(r), total)
	}
	t.Logf("%d messages: injected in %v, delivered in %v (%.0f msg/s end to end)",
		total, injected.Round(time.Millisecond), delivered.Round(time.Millisecond), float64(total)/delivered.Seconds())
}

func count(sinks []*testenv.Sink) int {
	n := 0
	for _, s := range sinks {
		n += s.Count()
	}
	return n
}
