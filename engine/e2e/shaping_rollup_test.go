package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestMXRollup: domains whose MX hosts match an [mx-rollup] suffix form
// one site with one queue ("bigp/default") and one max-smtp-out; domains
// with an identical MX set roll up by themselves under the first domain's
// name (issue 5, point 2).
func TestMXRollup(t *testing.T) {
	t.Parallel()
	const perDomain = 30
	dns := startDNS(t)
	big := testenv.StartSink(t, "127.20.53.10:25", testenv.SinkOptions{Hostname: "mx.bigprovider.test", Delay: 20 * time.Millisecond})
	shared := testenv.StartSink(t, "127.20.53.20:25", testenv.SinkOptions{Hostname: "mx1.shared.test"})
	dns.SetMX("a.test", dnstest.MX{Pref: 10, Host: "mx1.mx.bigprovider.test"})
	dns.SetMX("b.test", dnstest.MX{Pref: 10, Host: "mx2.mx.bigprovider.test"})
	dns.SetA("mx1.mx.bigprovider.test", "127.20.53.10")
	dns.SetA("mx2.mx.bigprovider.test", "127.20.53.10")
	for _, dom := range []string{"c.test", "d.test"} {
		dns.SetMX(dom, dnstest.MX{Pref: 10, Host: "mx1.shared.test"}, dnstest.MX{Pref: 20, Host: "mx2.shared.test"})
	}
	dns.SetA("mx1.shared.test", "127.20.53.20")
	dns.SetA("mx2.shared.test", "127.20.53.20")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.53.254"),
		DNS:    []string{dns.Addr()},
		Extra: `[domain."*"]
max-smtp-out = 10
max-msg-per-connection = 5
retry-after = ["1s"]

[mx-rollup.bigp]
mx-suffix = ["bigprovider.test"]
max-smtp-out = 1
`,
	}.TOML())

	// Rollup: a.test and b.test interleaved from several clients, so that
	// without the shared limit they would use several connections.
	ids := injectAll(t, d.Addr(), 2*perDomain, 6, 800, func(i int) string {
		return fmt.Sprintf("u%d@%s", i, map[int]string{0: "a.test", 1: "b.test"}[i%2])
	})
	if len(ids) != 2*perDomain {
		t.Fatalf("%d of %d messages acknowledged", len(ids), 2*perDomain)
	}
	checkDeliveredOnce(t, big, ids, 20*time.Second)
	recs := d.WaitAcct(t, testenv.OfType("d"), 2*perDomain, 10*time.Second)
	queues := map[string]map[string]int{} // domain → queue → rows
	for _, r := range recs {
		dom := r["rcpt"][len(r["rcpt"])-len("a.test"):]
		if queues[dom] == nil {
			queues[dom] = map[string]int{}
		}
		queues[dom][r["queue"]]++
	}
	t.Logf("queues by domain: %v; sink max concurrency %d over %d connections", queues, big.MaxConcurrent(), big.Connections())
	for _, dom := range []string{"a.test", "b.test"} {
		if q := queues[dom]; len(q) != 1 || q["bigp/default"] != perDomain {
			t.Errorf("%s: d rows by queue %v, want all %d in \"bigp/default\"", dom, q, perDomain)
		}
	}
	if m := big.MaxConcurrent(); m != 1 {
		t.Errorf("sink saw %d concurrent connections for the rollup, want 1 (its max-smtp-out)", m)
	}

	// Identical MX sets: d.test joins c.test, the first domain seen.
	idC := sendOne(t, d.Addr(), "first@c.test")
	shared.WaitCount(t, 1, 10*time.Second)
	idD := sendOne(t, d.Addr(), "second@d.test")
	checkDeliveredOnce(t, shared, []string{idC, idD}, 10*time.Second)
	for _, rcpt := range []string{"first@c.test", "second@d.test"} {
		rows := d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt(rcpt)), 1, 10*time.Second)
		if q := rows[0]["queue"]; q != "c.test/default" {
			t.Errorf("%s: queue %q, want \"c.test/default\" (identical MX set, first domain's name)", rcpt, q)
		}
	}
}
