package delivery

import (
	"crypto/x509"
	"errors"
	"strings"

	"github.com/sluice-mta/sluice/engine/reply"
)

// errNoTLS is Verified's answer on a plaintext session.
var errNoTLS = errors.New("delivery: no TLS on this connection")

// Verified reports whether the server's certificate chains to the
// configured roots (Config.RootCAs, else the system's) and is valid for the
// host name given to Dial: the PKIX check that MTA-STS (RFC 8461 §4.2) and
// REQUIRETLS (RFC 8689 §4.2.1) ask for. The handshake itself stays
// opportunistic (RFC 7435); callers decide what an unverified peer means.
// The answer is computed once, on the first call.
func (c *Conn) Verified() error {
	if c.verified != nil {
		return *c.verified
	}
	err := c.verify()
	c.verified = &err
	return err
}

func (c *Conn) verify() error {
	if c.tlsState == nil {
		return errNoTLS
	}
	certs := c.tlsState.PeerCertificates
	if len(certs) == 0 {
		return errors.New("delivery: server sent no certificate")
	}
	opts := x509.VerifyOptions{
		DNSName:       strings.TrimSuffix(c.host, "."),
		Roots:         c.cfg.RootCAs,
		Intermediates: x509.NewCertPool(),
	}
	for _, ic := range certs[1:] {
		opts.Intermediates.AddCert(ic)
	}
	_, err := certs[0].Verify(opts)
	return err
}

// requireTLSRefusal applies RFC 8689 §4.2.1 steps 2–4 to a REQUIRETLS
// message: TLS in use, the certificate verified, REQUIRETLS advertised
// after STARTTLS. Step 1 (an authenticated MX host, through MTA-STS or
// DNSSEC) is the caller's. It returns nil when the message may go.
func (c *Conn) requireTLSRefusal() *reply.Error {
	switch {
	case c.tlsState == nil:
		return reply.New(451, reply.Status{4, 7, 10}, "REQUIRETLS: no TLS with this host")
	case c.Verified() != nil:
		return reply.Wrap(451, reply.Status{4, 7, 5}, "REQUIRETLS: host certificate not verified", c.Verified())
	case !c.Has("REQUIRETLS"):
		// RFC 8689 §6: 5.7.30 "REQUIRETLS support required".
		return reply.New(550, reply.Status{5, 7, 30}, "REQUIRETLS support required but not offered by host")
	}
	return nil
}
