package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/sluice-mta/sluice/engine/reply"
)

// tlsFailure marks a failed TLS negotiation after STARTTLS was accepted;
// Dial answers it by reconnecting without TLS.
type tlsFailure struct{ err error }

func (e *tlsFailure) Error() string { return "delivery: TLS negotiation failed: " + e.err.Error() }
func (e *tlsFailure) Unwrap() error { return e.err }

// startTLS runs STARTTLS (RFC 3207) and the EHLO after it. A refused
// STARTTLS leaves the session in plaintext; a failed handshake returns a
// *reply.Error wrapping a *tlsFailure.
func (c *Conn) startTLS(ctx context.Context) error {
	code, text, err := c.cmd("STARTTLS")
	if err != nil {
		return c.dialLost(ctx, err)
	}
	if code == 421 {
		return reply.Parse(code, text)
	}
	if code != 220 && c.cfg.RequireTLS {
		c.quit()
		return reply.Wrap(451, reply.Status{4, 7, 4}, "TLS is required but the host refused STARTTLS", reply.Parse(code, text))
	}
	if code != 220 {
		// RFC 3207 §4: e.g. 454 "TLS not available"; opportunistic, so carry
		// on in plaintext on the same session (RFC 7435 §1.3).
		return nil
	}
	if c.br.Buffered() > 0 {
		// Bytes after the 220 would be read as if they came over TLS: a
		// response injection (cf. CVE-2011-0411). Refuse them.
		return c.tlsLost(ctx, errors.New("data after STARTTLS reply"))
	}
	tc := tls.Client(c.raw, c.tlsConfig())
	c.setDeadline(c.cfg.CommandTimeout, true)
	if err := tc.HandshakeContext(ctx); err != nil {
		return c.tlsLost(ctx, err)
	}
	st := tc.ConnectionState()
	c.nc, c.tlsState = tc, &st
	c.br = bufio.NewReaderSize(tc, 4096)
	c.bw.Reset(deadlineWriter{c})
	// RFC 3207 §4.2: discard what we knew and ask again.
	if err := c.hello(ctx); err != nil {
		var r *reply.Error
		if errors.As(err, &r) && r.Code == 421 && r.Status == (reply.Status{4, 4, 2}) {
			// A server that drops us right after the handshake (a TLS alert
			// on the first read) counts as a failed TLS negotiation.
			return c.tlsLost(ctx, r.Err)
		}
		return err
	}
	return nil
}

func (c *Conn) tlsLost(ctx context.Context, err error) error {
	return reply.Wrap(421, reply.Status{4, 4, 2}, "TLS negotiation failed", &tlsFailure{withCtx(ctx, err)})
}

// tlsConfig returns the configuration for the handshake. The default is
// opportunistic: RFC 7435 §1.3 encrypts without authenticating, since MX
// certificates are commonly self-signed or for another name.
func (c *Conn) tlsConfig() *tls.Config {
	sni := strings.TrimSuffix(c.host, ".")
	if c.cfg.TLSConfig == nil {
		return &tls.Config{
			InsecureSkipVerify: true, // RFC 7435: opportunistic, unauthenticated
			ServerName:         sni,
			MinVersion:         tls.VersionTLS12,
		}
	}
	cfg := c.cfg.TLSConfig.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = sni
	}
	return cfg
}

// TLS reports the negotiated protocol version and cipher suite, with
// OpenSSL-style version names ("TLSv1.3"), and ok false without TLS.
func (c *Conn) TLS() (version, cipher string, ok bool) {
	if c.tlsState == nil {
		return "", "", false
	}
	return tlsVersionName(c.tlsState.Version), tls.CipherSuiteName(c.tlsState.CipherSuite), true
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("TLS(0x%04x)", v)
}
