package config

import (
	"testing"
	"time"
)

func TestTLSSettings(t *testing.T) {
	c := mustLoad(t, `
[[listener]]
address = "127.0.0.1:4650"
tls-cert = "c.pem"
tls-key = "k.pem"
implicit-tls = true

[tls]
mta-sts-port = 8443

[domain."*"]
mta-sts = "on"

[domain."strict.test"]
require-starttls = true
mta-sts = "testing-only"

[domain."plain.test"]
mta-sts = "off"
`)
	if !c.Listeners[0].ImplicitTLS || c.TLS.Port() != 8443 || c.TLS.Timeout() != 10*time.Second {
		t.Errorf("listener/tls = %+v %+v", c.Listeners[0], c.TLS)
	}
	cases := []struct {
		domain  string
		require bool
		sts     MTASTSMode
	}{
		{"other.test", false, MTASTSOn},
		{"strict.test", true, MTASTSTestingOnly},
		{"plain.test", false, MTASTSOff},
	}
	for _, cs := range cases {
		s := c.DomainFor(cs.domain)
		if s.RequireStartTLS != cs.require || s.MTASTS != cs.sts || !s.UseStartTLS {
			t.Errorf("DomainFor(%s) = require %v, mta-sts %q; want %v, %q", cs.domain, s.RequireStartTLS, s.MTASTS, cs.require, cs.sts)
		}
	}
	if d := mustLoad(t, "[[listener]]\naddress = \"127.0.0.1:0\"\n").DomainFor("x.test"); d.MTASTS != MTASTSOff || d.RequireStartTLS {
		t.Errorf("defaults: mta-sts %q, require-starttls %v", d.MTASTS, d.RequireStartTLS)
	}
}
