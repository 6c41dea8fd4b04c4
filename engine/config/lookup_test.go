package config

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestDomainFor(t *testing.T) {
	c := mustLoad(t, `
[[listener]]
address = "127.0.0.1:0"
[domain."*"]
max-smtp-out = 10
retry-after = ["1m", "1h"]
route = "127.0.0.1:2526"
[domain."big.test"]
max-smtp-out = 50
use-starttls = false
[domain."direct.test"]
route = ""
max-msg-per-connection = 0
`)
	min, hour := Duration(time.Minute), Duration(time.Hour)
	b := builtinDomain()
	cases := []struct {
		domain string
		want   DomainSettings
	}{
		{"other.test", settings(10, 100, []Duration{min, hour}, b.BounceAfter, "127.0.0.1:2526", true)},
		{"big.test", settings(50, 100, []Duration{min, hour}, b.BounceAfter, "127.0.0.1:2526", false)},
		{"BIG.Test.", settings(50, 100, []Duration{min, hour}, b.BounceAfter, "127.0.0.1:2526", false)},
		{"sub.big.test", settings(10, 100, []Duration{min, hour}, b.BounceAfter, "127.0.0.1:2526", true)},
		{"direct.test", settings(10, 0, []Duration{min, hour}, b.BounceAfter, "", true)},
		{"*", settings(10, 100, []Duration{min, hour}, b.BounceAfter, "127.0.0.1:2526", true)},
	}
	for _, tc := range cases {
		if got := c.DomainFor(tc.domain); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DomainFor(%q) = %+v, want %+v", tc.domain, got, tc.want)
		}
	}
	got := c.DomainFor("other.test")
	got.RetryAfter[0] = 0
	if c.DomainFor("other.test").RetryAfter[0] != min {
		t.Error("DomainFor's RetryAfter aliases the config")
	}
}

func TestDomainForWithoutLoad(t *testing.T) {
	var c Config
	if got := c.DomainFor("x.test"); !reflect.DeepEqual(got, builtinDomain()) {
		t.Errorf("zero Config: DomainFor = %+v, want built-ins", got)
	}
	three := 3
	c.Domains = map[string]*Domain{"x.test": {MaxSMTPOut: &three}}
	want := builtinDomain()
	want.MaxSMTPOut, want.BackoffMaxSMTPOut = 3, 3
	if got := c.DomainFor("x.test"); !reflect.DeepEqual(got, want) {
		t.Errorf("no \"*\": DomainFor = %+v, want %+v", got, want)
	}
}

func TestSourceFor(t *testing.T) {
	c := mustLoad(t, `
[[listener]]
address = "127.0.0.1:0"
[[source]]
cidr = "127.0.0.0/8"
default-virtual-mta = "wide"
[[source]]
cidr = "127.0.0.1"
default-virtual-mta = "host"
[[source]]
cidr = "127.0.0.0/16"
default-virtual-mta = "mid"
[[source]]
cidr = "::1"
default-virtual-mta = "v6"
[[virtual-mta]]
name = "v1"
smtp-source-host = "127.0.0.2 v1.test"
[[virtual-mta-pool]]
name = "wide"
virtual-mtas = ["v1"]
[[virtual-mta-pool]]
name = "host"
virtual-mtas = ["v1"]
[[virtual-mta-pool]]
name = "mid"
virtual-mtas = ["v1"]
[[virtual-mta-pool]]
name = "v6"
virtual-mtas = ["v1"]
`)
	cases := []struct{ ip, want, cidr string }{
		{"127.0.0.1", "host", "127.0.0.1/32"},
		{"127.0.9.9", "mid", "127.0.0.0/16"},
		{"127.9.9.9", "wide", "127.0.0.0/8"},
		{"::ffff:127.0.0.1", "host", "127.0.0.1/32"},
		{"::1", "v6", "::1/128"},
		{"10.0.0.1", "", "0.0.0.0/0"},
		{"2001:db8::1", "", "0.0.0.0/0"},
	}
	for _, tc := range cases {
		s := c.SourceFor(netip.MustParseAddr(tc.ip))
		if s.DefaultVirtualMTA != tc.want || s.CIDR.String() != tc.cidr {
			t.Errorf("SourceFor(%s) = %q %s, want %q %s", tc.ip, s.DefaultVirtualMTA, s.CIDR, tc.want, tc.cidr)
		}
	}
	for _, s := range append(c.Sources, c.SourceFor(netip.MustParseAddr("10.0.0.1"))) {
		if s.AddReceivedHeader == nil || !*s.AddReceivedHeader {
			t.Errorf("source %s: add-received-header not defaulted to true", s.CIDR)
		}
	}
	if s := c.SourceFor(netip.Addr{}); s.CIDR.String() != "0.0.0.0/0" || s.AlwaysAllowRelaying {
		t.Errorf("SourceFor(invalid) = %+v", s)
	}
}

func TestDomainForVMTA(t *testing.T) {
	c := mustLoad(t, `
[[listener]]
address = "127.0.0.1:0"
[[virtual-mta]]
name = "v1"
smtp-source-host = "127.0.0.2 v1.test"
[virtual-mta.domain."gmail.test"]
max-smtp-out = 2
[virtual-mta.domain."*"]
max-msg-per-connection = 7
[[virtual-mta]]
name = "v2"
smtp-source-host = "127.0.0.3 v2.test"
[domain."*"]
max-smtp-out = 10
max-msg-per-connection = 100
[domain."gmail.test"]
max-smtp-out = 5
max-msg-per-connection = 50
`)
	cases := []struct {
		domain, vmta string
		out, perConn int
	}{
		{"gmail.test", "v1", 2, 50},   // the VMTA's domain block, then the domain's
		{"other.test", "v1", 10, 7},   // the VMTA's "*" beats the global "*"
		{"gmail.test", "v2", 5, 50},   // no VMTA overrides
		{"GMAIL.test", "v1", 2, 50},   // case-insensitive
		{"gmail.test", "nope", 5, 50}, // an unknown VMTA has no overrides
	}
	for _, tc := range cases {
		got := c.DomainForVMTA(tc.domain, tc.vmta)
		if got.MaxSMTPOut != tc.out || got.MaxMsgPerConnection != tc.perConn {
			t.Errorf("DomainForVMTA(%q, %q) = out %d perConn %d, want %d %d", tc.domain, tc.vmta, got.MaxSMTPOut, got.MaxMsgPerConnection, tc.out, tc.perConn)
		}
	}
}

// settings is the built-in DomainSettings with the fields the tables vary.
func settings(out, perConn int, retry []Duration, bounceAfter Duration, route string, tls bool) DomainSettings {
	s := builtinDomain()
	s.MaxSMTPOut, s.MaxMsgPerConnection, s.RetryAfter, s.BounceAfter, s.Route, s.UseStartTLS = out, perConn, retry, bounceAfter, route, tls
	s.BackoffMaxSMTPOut = out
	return s
}

func TestRollup(t *testing.T) {
	c := mustLoad(t, `
[[listener]]
address = "127.0.0.1:0"
[domain."*"]
max-smtp-out = 10
max-msg-rate = "600/m"
[mx-rollup.google]
mx-suffix = ["google.com", "googlemail.com"]
max-smtp-out = 5
backoff-max-msg-rate = "1/s"
backoff-to-normal-after = "delivery"
`)
	cases := []struct {
		mx   []string
		want string
	}{
		{[]string{"aspmx.l.google.com."}, "google"},
		{[]string{"mx1.example.test", "ALT1.ASPMX.L.GOOGLE.COM"}, "google"},
		{[]string{"notgoogle.com"}, ""},
		{[]string{"google.com.evil.test"}, ""},
	}
	for _, tc := range cases {
		if got := c.RollupFor(tc.mx); got != tc.want {
			t.Errorf("RollupFor(%v) = %q, want %q", tc.mx, got, tc.want)
		}
	}
	s := c.DomainFor("google")
	if s.MaxSMTPOut != 5 || s.MaxMsgRate != (Rate{600, time.Minute}) || s.BackoffMaxMsgRate != (Rate{1, time.Second}) || s.BackoffToNormalAfter != 0 || s.BackoffMaxSMTPOut != 5 {
		t.Errorf("google site settings = %+v", s)
	}
	for _, bad := range []string{"0/s", "5/x", "five/m", "5"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}
