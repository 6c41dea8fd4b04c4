package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/testenv"
)

// stsEnv is a DNS server, a test CA and an HTTPS policy server, with the
// [tls] config that makes the daemon trust the CA and fetch from the
// policy server's port.
type stsEnv struct {
	dns   *dnstest.Server
	ca    *testenv.CA
	ps    *testenv.PolicyServer
	extra string
}

func startSTS(t *testing.T, policyIP string, domains ...string) *stsEnv {
	t.Helper()
	e := &stsEnv{dns: startDNS(t), ca: testenv.NewCA(t)}
	e.ps = testenv.StartPolicyServer(t, policyIP+":0", e.ca, domains...)
	_, port, _ := net.SplitHostPort(e.ps.Addr)
	caFile := e.ca.WriteCA(t, t.TempDir())
	e.extra = fmt.Sprintf("[tls]\nca-file = %q\nmta-sts-port = %s\nmta-sts-timeout = \"3s\"\n", filepath.ToSlash(caFile), port)
	return e
}

// publish points domain's MTA-STS TXT record and policy host at the
// policy server and serves a policy of mode listing mx.
func (e *stsEnv) publish(domain, mode string, mx ...string) {
	host, _, _ := net.SplitHostPort(e.ps.Addr)
	e.dns.SetTXT("_mta-sts."+domain, "v=STSv1; id=1;")
	e.dns.SetA("mta-sts."+domain, host)
	body := "version: STSv1\r\nmode: " + mode + "\r\n"
	for _, m := range mx {
		body += "mx: " + m + "\r\n"
	}
	e.ps.Set(domain, body+"max_age: 86400\r\n")
}

// TestTLSMTASTS: with mta-sts = "on", an enforce policy that does not list
// the MX host defers (4.7.5) and nothing reaches it; one that lists it
// delivers over verified TLS; an MX whose certificate does not verify is
// refused under enforce; a testing policy only logs and delivers; and
// mta-sts = "testing-only" demotes an enforce policy to logging.
func TestTLSMTASTS(t *testing.T) {
	t.Parallel()
	domains := []string{"sts-out.test", "sts-in.test", "sts-cert.test", "sts-testing.test", "sts-demoted.test"}
	e := startSTS(t, "127.20.74.100", domains...)
	sinks := map[string]*testenv.Sink{}
	for i, dom := range domains {
		ip := fmt.Sprintf("127.20.74.%d", i+1)
		cfg := e.ca.ServerConfig(t, "mx."+dom)
		if dom == "sts-cert.test" {
			cfg = e.ca.ServerConfig(t, "wrong-name.test") // valid chain, wrong name
		}
		sinks[dom] = testenv.StartSink(t, ip+":25", testenv.SinkOptions{TLSConfig: cfg})
		mxTo(e.dns, dom, ip)
	}
	e.publish("sts-out.test", "enforce", "mx.elsewhere.test")
	e.publish("sts-in.test", "enforce", "*.sts-in.test")
	e.publish("sts-cert.test", "enforce", "mx.sts-cert.test")
	e.publish("sts-testing.test", "testing", "mx.elsewhere.test")
	e.publish("sts-demoted.test", "enforce", "mx.elsewhere.test")

	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.74.254"),
		DNS:    []string{e.dns.Addr()},
		Domains: map[string]testenv.Domain{
			"*":                {MTASTS: "on", RetryAfter: []string{"1h"}},
			"sts-demoted.test": {MTASTS: "testing-only"},
		},
		Extra: e.extra,
	}.TOML())
	for _, dom := range domains {
		sendOne(t, d.Addr(), "user@"+dom)
	}

	for _, c := range []struct{ dom, typ, status string }{
		{"sts-out.test", "t", "4.7.5"},
		{"sts-cert.test", "t", "4.7.5"},
		{"sts-in.test", "d", "2."},
		{"sts-testing.test", "d", "2."},
		{"sts-demoted.test", "d", "2."},
	} {
		recs := d.WaitAcct(t, testenv.All(testenv.OfType(c.typ), testenv.ForRcpt("user@"+c.dom)), 1, 20*time.Second)
		if got := recs[0]["dsnStatus"]; !strings.HasPrefix(got, c.status) {
			t.Errorf("%s: dsnStatus %q, want %s", c.dom, got, c.status)
		}
		if c.typ == "d" && recs[0]["dlvTlsProtocol"] == "" {
			t.Errorf("%s: delivered without dlvTlsProtocol", c.dom)
		}
	}
	for _, dom := range []string{"sts-out.test", "sts-cert.test"} {
		if n := sinks[dom].Count(); n != 0 {
			t.Errorf("%s: the refused MX got %d messages", dom, n)
		}
	}
	if n := sinks["sts-out.test"].Connections(); n != 0 {
		t.Errorf("sts-out.test: %d connections to an MX the policy does not list", n)
	}
	if n := e.ps.Fetches("sts-in.test"); n != 1 {
		t.Errorf("sts-in.test policy fetched %d times, want 1 (cached)", n)
	}
}
