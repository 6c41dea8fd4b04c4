package smtpd

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// handleStartTLS upgrades the connection (RFC 3207). Anything the client
// sent after STARTTLS in clear text is discarded, so that it cannot be
// taken as commands of the encrypted session (RFC 3207 §5, CVE-2011-0411).
// The session ends: the client must say EHLO again (§4.2).
func (c *Conn) handleStartTLS(arg string) {
	_, isTLS := c.TLSConnectionState()
	switch {
	case c.srv.TLSConfig == nil:
		c.reply(502, smtp.EnhancedCode{5, 5, 1}, "STARTTLS not available")
		return
	case isTLS:
		c.reply(503, smtp.EnhancedCode{5, 5, 1}, "already under TLS")
		return
	case arg != "":
		c.reply(501, smtp.EnhancedCode{5, 5, 4}, "STARTTLS takes no argument")
		return
	case c.mailOK || c.bdatOpen:
		c.reply(503, smtp.EnhancedCode{5, 5, 1}, "STARTTLS not allowed in a transaction")
		return
	}
	c.reply(220, smtp.EnhancedCode{2, 0, 0}, "ready to start TLS")
	if err := c.flush(); err != nil {
		c.quit = true
		return
	}
	if n := c.br.Buffered(); n > 0 {
		c.br.Discard(n)
	}
	tc := tls.Server(c.raw, c.srv.TLSConfig)
	tc.SetDeadline(time.Now().Add(c.srv.readTimeout()))
	if err := tc.Handshake(); err != nil {
		c.srv.logf("smtpd: %v: TLS handshake: %v", c.raw.RemoteAddr(), err)
		c.quit = true
		return
	}
	tc.SetDeadline(time.Time{})
	c.nc = tc
	if c.session != nil {
		c.resetTx()
		c.session.Logout()
		c.session = nil
	}
	c.helo, c.didAuth = "", false
}

// handleAuth runs an RFC 4954 exchange: "AUTH mech [initial-response]",
// then 334 challenges until the mechanism is done.
func (c *Conn) handleAuth(arg string) {
	if !c.needHello() {
		return
	}
	if c.didAuth {
		c.reply(503, smtp.EnhancedCode{5, 5, 1}, "already authenticated") // RFC 4954 §4
		return
	}
	if c.mailOK || c.bdatOpen {
		c.reply(503, smtp.EnhancedCode{5, 5, 1}, "AUTH not allowed during a transaction")
		return
	}
	as, ok := c.session.(AuthSession)
	if !ok {
		c.reply(502, smtp.EnhancedCode{5, 5, 1}, "AUTH not supported")
		return
	}
	if _, isTLS := c.TLSConnectionState(); !isTLS && !c.srv.AllowInsecureAuth {
		c.reply(538, smtp.EnhancedCode{5, 7, 11}, "encryption required for requested authentication mechanism")
		return
	}
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 {
		c.reply(501, smtp.EnhancedCode{5, 5, 4}, "syntax: AUTH mechanism [initial-response]")
		return
	}
	srv, err := as.Auth(strings.ToUpper(f[0]))
	if err != nil {
		c.replyErr(err)
		return
	}
	var resp []byte
	if len(f) == 2 {
		if f[1] == "=" { // RFC 4954 §4: an empty initial response
			resp = []byte{}
		} else if resp, err = base64.StdEncoding.DecodeString(f[1]); err != nil {
			c.reply(501, smtp.EnhancedCode{5, 5, 2}, "invalid base64 in initial response")
			return
		}
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				c.replyErr(se)
			} else {
				c.reply(535, smtp.EnhancedCode{5, 7, 8}, "authentication credentials invalid")
			}
			return
		}
		if done {
			c.didAuth = true
			c.reply(235, smtp.EnhancedCode{2, 7, 0}, "authentication succeeded")
			return
		}
		c.reply(334, smtp.NoEnhancedCode, base64.StdEncoding.EncodeToString(challenge))
		line, err := c.readLine()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				c.reply(500, smtp.EnhancedCode{5, 5, 6}, "authentication exchange line too long")
				return
			}
			c.quit = true
			return
		}
		if line == "*" {
			c.reply(501, smtp.EnhancedCode{5, 0, 0}, "authentication cancelled") // RFC 4954 §4
			return
		}
		if resp, err = base64.StdEncoding.DecodeString(line); err != nil {
			c.reply(501, smtp.EnhancedCode{5, 5, 2}, "invalid base64 response")
			return
		}
	}
}
