package e2e

import (
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestDNS covers the MX outcomes: a null MX and a non-existent domain bounce
// as bad-domain; a dead first MX falls through to the second; SERVFAIL
// defers, and the message goes once DNS answers again.
func TestDNS(t *testing.T) {
	t.Parallel()
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.5.1:25", testenv.SinkOptions{})

	// RFC 7505 §3: a null MX means the domain accepts no mail.
	dns.SetMX("null.test", dnstest.MX{Pref: 0, Host: "."})
	// nx.test: no records at all, so NXDOMAIN.
	// backup.test: pref 10 has nothing listening, pref 20 is the sink
	// (RFC 5321 §5.1: try the MX hosts in order of preference).
	dns.SetMX("backup.test", dnstest.MX{Pref: 10, Host: "dead.backup.test"}, dnstest.MX{Pref: 20, Host: "mx.backup.test"})
	dns.SetA("dead.backup.test", "127.20.5.99")
	dns.SetA("mx.backup.test", "127.20.5.1")
	dns.SetServFail("servfail.test")

	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.5.254"),
		DNS:     []string{dns.Addr()},
		Domains: map[string]testenv.Domain{"*": {RetryAfter: []string{"1s"}, BounceAfter: "1m"}},
	}.TOML())

	const (
		nullRcpt   = "x@null.test"
		nxRcpt     = "x@nx.test"
		backupRcpt = "x@backup.test"
		sfRcpt     = "x@servfail.test"
	)
	for _, rcpt := range []string{nullRcpt, nxRcpt, backupRcpt, sfRcpt} {
		sendOne(t, d.Addr(), rcpt)
	}

	for _, rcpt := range []string{nullRcpt, nxRcpt} {
		recs := d.WaitAcct(t, testenv.All(testenv.ForRcpt(rcpt), testenv.OfType("b")), 1, 20*time.Second)
		if recs[0]["bounceCat"] != "bad-domain" {
			t.Errorf("%s: bounceCat %q, want bad-domain: %v", rcpt, recs[0]["bounceCat"], recs[0])
		}
	}
	recs := d.WaitAcct(t, testenv.All(testenv.ForRcpt(backupRcpt), testenv.OfType("d")), 1, 20*time.Second)
	if ip := recs[0]["dlvDestinationIp"]; ip != "127.20.5.1" {
		t.Errorf("backup.test delivered to %q, want the pref-20 host 127.20.5.1", ip)
	}

	// SERVFAIL is temporary: deferrals, no bounce.
	d.WaitAcct(t, testenv.All(testenv.ForRcpt(sfRcpt), testenv.OfType("t")), 1, 20*time.Second)
	if got := testenv.Filter(d.Acct(), testenv.ForRcpt(sfRcpt), testenv.OfType("b", "d")); len(got) != 0 {
		t.Fatalf("SERVFAIL gave %q, want only deferrals:\n%s", typesOf(got), dump(got))
	}
	if n := dns.Queries("servfail.test", mdns.TypeMX); n == 0 {
		t.Errorf("no MX query for servfail.test")
	}
	// DNS recovers: the next retry delivers.
	dns.Reset("servfail.test")
	mxTo(dns, "servfail.test", "127.20.5.1")
	d.WaitAcct(t, testenv.All(testenv.ForRcpt(sfRcpt), testenv.OfType("d")), 1, 20*time.Second)

	if got := sink.Count(); got != 2 {
		t.Errorf("sink holds %d messages, want 2 (backup.test, servfail.test)", got)
	}
	for _, rcpt := range []string{nullRcpt, nxRcpt, backupRcpt} {
		if got := testenv.Filter(d.Acct(), testenv.ForRcpt(rcpt), testenv.OfType("b", "d", "t")); len(got) != 1 {
			t.Errorf("%s: rows %q, want exactly one", rcpt, typesOf(got))
		}
	}
}
