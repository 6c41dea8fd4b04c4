package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestTLSRequireTLS: a message submitted with REQUIRETLS over STARTTLS
// (RFC 8689) is relayed only to an MX host that an MTA-STS policy lists,
// over verified TLS, with REQUIRETLS passed on; a destination without a
// policy, or whose host lacks REQUIRETLS, bounces it with 5.7.30. The
// domains keep the default mta-sts = "off": REQUIRETLS looks the policy
// up by itself.
func TestTLSRequireTLS(t *testing.T) {
	t.Parallel()
	domains := []string{"rt-ok.test", "rt-nopolicy.test", "rt-nosupport.test"}
	e := startSTS(t, "127.20.76.100", domains...)
	sinks := map[string]*testenv.Sink{}
	for i, dom := range domains {
		ip := "127.20.76." + string(rune('1'+i))
		sinks[dom] = testenv.StartSink(t, ip+":25", testenv.SinkOptions{
			TLSConfig:  e.ca.ServerConfig(t, "mx."+dom),
			RequireTLS: dom != "rt-nosupport.test",
		})
		mxTo(e.dns, dom, ip)
	}
	e.publish("rt-ok.test", "enforce", "mx.rt-ok.test")
	e.publish("rt-nosupport.test", "enforce", "mx.rt-nosupport.test")

	d := tlsDaemon(t, e.ca, "127.20.76.254", e.dns.Addr(), false, nil, e.extra)
	host, port, _ := net.SplitHostPort(d.Addr())
	caFile := e.ca.WriteCA(t, t.TempDir())
	for _, dom := range domains {
		if out := pyTLS(t, "starttls", host, port, "127.20.76.254", caFile, "", "", "1", "s@e2e.test", "user@"+dom); !strings.HasPrefix(out, "OK ") {
			t.Fatalf("REQUIRETLS submission to %s: %s", dom, out)
		}
	}

	d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt("user@rt-ok.test")), 1, 20*time.Second)
	if msgs := sinks["rt-ok.test"].Messages(); len(msgs) != 1 || !msgs[0].TLS || !msgs[0].RequireTLS {
		t.Errorf("rt-ok.test: %d messages; want 1 over TLS with REQUIRETLS", len(msgs))
	}
	for _, dom := range []string{"rt-nopolicy.test", "rt-nosupport.test"} {
		recs := d.WaitAcct(t, testenv.All(testenv.OfType("b"), testenv.ForRcpt("user@"+dom)), 1, 20*time.Second)
		if got := recs[0]["dsnStatus"]; !strings.HasPrefix(got, "5.7.30") {
			t.Errorf("%s: bounce dsnStatus %q, want 5.7.30", dom, got)
		}
		if dom == "rt-nosupport.test" && recs[0]["dlvTlsProtocol"] == "" {
			t.Errorf("%s: bounce made on a TLS connection lacks dlvTlsProtocol", dom)
		}
		if n := sinks[dom].Count(); n != 0 {
			t.Errorf("%s: sink got %d messages", dom, n)
		}
	}
}
