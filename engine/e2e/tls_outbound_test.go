package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestTLSRequireStartTLS: with require-starttls, mail to a sink without
// STARTTLS is deferred (t, 4.7.4) and never sent in plaintext, while mail
// to a sink with STARTTLS is delivered over TLS with dlvTlsProtocol and
// dlvTlsCipher filled in. A domain without the setting still reaches the
// plaintext sink (opportunistic).
func TestTLSRequireStartTLS(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	dns := startDNS(t)
	plain := testenv.StartSink(t, "127.20.73.1:25", testenv.SinkOptions{})
	secure := testenv.StartSink(t, "127.20.73.2:25", testenv.SinkOptions{TLSConfig: ca.ServerConfig(t, "mx.tls-yes.test")})
	mxTo(dns, "tls-no.test", "127.20.73.1")
	mxTo(dns, "tls-yes.test", "127.20.73.2")
	mxTo(dns, "tls-opp.test", "127.20.73.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.73.254"),
		DNS:    []string{dns.Addr()},
		Domains: map[string]testenv.Domain{
			"tls-no.test":  {RequireStartTLS: testenv.Bool(true), RetryAfter: []string{"1h"}},
			"tls-yes.test": {RequireStartTLS: testenv.Bool(true)},
		},
	}.TOML())

	sendOne(t, d.Addr(), "a@tls-no.test")
	sendOne(t, d.Addr(), "b@tls-yes.test")
	sendOne(t, d.Addr(), "c@tls-opp.test")

	tr := d.WaitAcct(t, testenv.All(testenv.OfType("t"), testenv.ForRcpt("a@tls-no.test")), 1, 20*time.Second)
	if got := tr[0]["dsnStatus"]; !strings.HasPrefix(got, "4.7.4") {
		t.Errorf("deferral dsnStatus = %q, want 4.7.4", got)
	}
	dr := d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt("b@tls-yes.test")), 1, 20*time.Second)
	if p, c := dr[0]["dlvTlsProtocol"], dr[0]["dlvTlsCipher"]; p != "TLSv1.3" || !strings.HasPrefix(c, "TLS_") {
		t.Errorf("d record TLS fields = %q, %q; want TLSv1.3 and a cipher", p, c)
	}
	if msgs := secure.Messages(); len(msgs) != 1 || !msgs[0].TLS {
		t.Errorf("TLS sink got %d messages (TLS %v), want 1 over TLS", len(msgs), len(msgs) > 0 && msgs[0].TLS)
	}
	d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt("c@tls-opp.test")), 1, 20*time.Second)
	for _, m := range plain.Messages() {
		for _, r := range m.Rcpts {
			if r == "a@tls-no.test" {
				t.Errorf("require-starttls mail reached the plaintext sink")
			}
		}
	}
	if got := testenv.Filter(d.Acct(), testenv.ForRcpt("c@tls-opp.test"), testenv.OfType("d")); len(got) == 1 && got[0]["dlvTlsProtocol"] != "" {
		t.Errorf("plaintext delivery has dlvTlsProtocol %q", got[0]["dlvTlsProtocol"])
	}
}

// TestTLSSharedSite: two domains with the same MX host share a queue and
// its connections; only one has require-starttls. Its mail is deferred
// (4.7.4) while the other's is delivered in plaintext, whichever domain the
// connection was opened for.
func TestTLSSharedSite(t *testing.T) {
	t.Parallel()
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.73.3:25", testenv.SinkOptions{})
	for _, dom := range []string{"share-free.test", "share-strict.test"} {
		dns.SetMX(dom, dnstest.MX{Pref: 10, Host: "mx.shared.test"})
	}
	dns.SetA("mx.shared.test", "127.20.73.3")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.73.252"),
		DNS:    []string{dns.Addr()},
		Domains: map[string]testenv.Domain{
			"share-strict.test": {RequireStartTLS: testenv.Bool(true), RetryAfter: []string{"1h"}},
		},
	}.TOML())
	// One message per order: each domain gets to be the routing domain.
	sendOne(t, d.Addr(), "s1@share-strict.test", "f1@share-free.test")
	sendOne(t, d.Addr(), "f2@share-free.test", "s2@share-strict.test")
	for _, r := range []string{"f1@share-free.test", "f2@share-free.test"} {
		d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt(r)), 1, 20*time.Second)
	}
	for _, r := range []string{"s1@share-strict.test", "s2@share-strict.test"} {
		recs := d.WaitAcct(t, testenv.All(testenv.OfType("t"), testenv.ForRcpt(r)), 1, 20*time.Second)
		if got := recs[0]["dsnStatus"]; !strings.HasPrefix(got, "4.7.4") {
			t.Errorf("%s: dsnStatus %q, want 4.7.4", r, got)
		}
	}
	for _, m := range sink.Messages() {
		for _, r := range m.Rcpts {
			if strings.HasSuffix(r, "@share-strict.test") {
				t.Errorf("%s reached the plaintext sink", r)
			}
		}
	}
	if got := testenv.Filter(d.Acct(), testenv.OfType("t"), testenv.ForRcpt("f1@share-free.test")); len(got) != 0 {
		t.Errorf("share-free.test mail was deferred: %v", got)
	}
}
