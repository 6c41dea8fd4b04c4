package doctor_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/doctor"
)

// TestCheckSPF evaluates RFC 7208 records against a real DNS server.
func TestCheckSPF(t *testing.T) {
	r, srv := resolver(t)
	srv.SetTXT("ip.test", "v=spf1 ip4:127.46.3.0/24 ip6:2001:db8::/32 -all")
	srv.SetTXT("soft.test", "v=spf1 ~all")
	srv.SetTXT("neutral.test", "v=spf1 ip4:10.0.0.1")
	srv.SetTXT("two.test", "v=spf1 -all", "v=spf1 +all")
	srv.SetTXT("redir.test", "v=spf1 redirect=ip.test")
	srv.SetTXT("redir-none.test", "v=spf1 redirect=nothing.test")
	srv.SetTXT("inc-none.test", "v=spf1 include:nothing.test -all")
	srv.SetTXT("mx.test", "v=spf1 mx/24 -all")
	srv.SetMX("mx.test", dnstest.MX{Pref: 10, Host: "m.mx.test"})
	srv.SetA("m.mx.test", "127.46.4.200")
	srv.SetTXT("macro.test", "v=spf1 exists:%{ir}.%{v}._spf.%{d} -all")
	srv.SetA("5.3.46.127.in-addr._spf.macro.test", "127.0.0.2")
	srv.SetTXT("bad.test", "v=spf1 foo:bar -all")
	srv.SetTXT("void.test", "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test +all")
	// loop.test includes l1 … l11: one more DNS-querying term than allowed.
	srv.SetTXT("loop.test", "v=spf1 include:l1.loop.test -all")
	for i := 1; i <= 11; i++ {
		srv.SetTXT(fmt.Sprintf("l%d.loop.test", i), fmt.Sprintf("v=spf1 include:l%d.loop.test -all", i+1))
	}
	srv.SetTXT("l12.loop.test", "v=spf1 +all")

	ip := netip.MustParseAddr("127.46.3.5")
	for _, tc := range []struct {
		domain, ip, want, why string
	}{
		{"ip.test", "127.46.3.5", doctor.SPFPass, "ip4:127.46.3.0/24"},
		{"ip.test", "127.46.9.5", doctor.SPFFail, "all"},
		{"ip.test", "2001:db8::25", doctor.SPFPass, "ip6:2001:db8::/32"},
		{"soft.test", "", doctor.SPFSoftFail, ""},
		{"neutral.test", "", doctor.SPFNeutral, ""},
		{"none.test", "", doctor.SPFNone, ""},
		{"two.test", "", doctor.SPFPermError, "2 SPF records"},
		{"redir.test", "", doctor.SPFPass, "ip4:127.46.3.0/24 in ip.test"},
		{"redir-none.test", "", doctor.SPFPermError, "redirect=nothing.test has no SPF record"},
		{"inc-none.test", "", doctor.SPFPermError, "include:nothing.test has no SPF record"},
		{"mx.test", "127.46.4.7", doctor.SPFPass, "mx/24"},
		{"mx.test", "127.46.5.7", doctor.SPFFail, "all"},
		{"macro.test", "", doctor.SPFPass, "exists:"},
		{"macro.test", "127.46.3.6", doctor.SPFFail, "all"},
		{"bad.test", "", doctor.SPFPermError, "unknown mechanism"},
		{"void.test", "", doctor.SPFPermError, "found nothing"},
		{"loop.test", "", doctor.SPFPermError, "more than 10 DNS-querying terms"},
	} {
		a := ip
		if tc.ip != "" {
			a = netip.MustParseAddr(tc.ip)
		}
		got := doctor.CheckSPF(context.Background(), r, a, tc.domain, "", "helo.test")
		if got.Result != tc.want || !strings.Contains(got.Match+got.Reason, tc.why) {
			t.Errorf("%s for %s: %+v, want %s (%s)", tc.domain, a, got, tc.want, tc.why)
		}
	}
}
