package config

import (
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// TLS holds the outbound TLS settings shared by every destination: the
// roots that authenticate MX hosts (for MTA-STS and REQUIRETLS) and how
// MTA-STS policies are fetched. Per-destination switches (use-starttls,
// require-starttls, mta-sts) live in [domain."name"].
type TLS struct {
	// CAFile is a PEM bundle of root certificates that replaces the system
	// roots when verifying MX certificates and MTA-STS policy hosts; ""
	// uses the system roots. Meant for private CAs and tests.
	CAFile string `toml:"ca-file"`
	// MTASTSPort is the HTTPS port of policy hosts [443]; only tests
	// change it (RFC 8461 §3.3 fixes 443).
	MTASTSPort int `toml:"mta-sts-port"`
	// MTASTSTimeout bounds one policy fetch, DNS included [10s].
	MTASTSTimeout Duration `toml:"mta-sts-timeout"`
}

// Port returns the policy HTTPS port, 443 when unset.
func (t TLS) Port() int {
	if t.MTASTSPort == 0 {
		return 443
	}
	return t.MTASTSPort
}

// Timeout returns the policy fetch timeout, 10s when unset.
func (t TLS) Timeout() time.Duration {
	if t.MTASTSTimeout == 0 {
		return 10 * time.Second
	}
	return t.MTASTSTimeout.D()
}

// MTASTSMode says how a destination's MTA-STS policy (RFC 8461) is used.
type MTASTSMode string

// MTA-STS modes for [domain."name"] mta-sts.
const (
	MTASTSOff         MTASTSMode = "off"          // no policy lookups [default]
	MTASTSOn          MTASTSMode = "on"           // honour the policy's own mode (enforce, testing, none)
	MTASTSTestingOnly MTASTSMode = "testing-only" // fetch and check, but only log failures, even in enforce mode
)

// UnmarshalText accepts "on", "off" and "testing-only".
func (m *MTASTSMode) UnmarshalText(b []byte) error {
	switch v := MTASTSMode(b); v {
	case MTASTSOff, MTASTSOn, MTASTSTestingOnly:
		*m = v
		return nil
	}
	return fmt.Errorf("invalid mta-sts mode %q: want on, off or testing-only", b)
}

func (c *Config) validateTLS(p *problems) {
	if f := c.TLS.CAFile; f != "" {
		if b, err := os.ReadFile(f); err != nil {
			p.add("tls.ca-file", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			p.add("tls.ca-file", "%s holds no PEM certificate", f)
		}
	}
	if n := c.TLS.MTASTSPort; n < 0 || n > 65535 {
		p.add("tls.mta-sts-port", "must be a port number from 1 to 65535")
	}
	for i, l := range c.Listeners {
		if l.ImplicitTLS && l.TLSCert == "" {
			p.add(fmt.Sprintf("listener[%d].implicit-tls", i), "needs tls-cert and tls-key")
		}
	}
}
