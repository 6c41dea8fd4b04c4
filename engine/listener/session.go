package listener

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/reply"
	"github.com/sluice-mta/sluice/engine/smtpd"
	"github.com/sluice-mta/sluice/engine/spool"
)

type backend struct{ s *Server }

// NewSession is called once per connection and again after STARTTLS.
func (b *backend) NewSession(c *smtpd.Conn) (smtpd.Session, error) {
	var ip netip.Addr
	if ta, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
		ip = ip.Unmap()
	}
	_, isTLS := c.TLSConnectionState()
	src := b.s.policy.Load().source(ip)
	sess := &session{
		srv:  b.s,
		conn: c,
		ip:   ip,
		src:  src,
		tls:  isTLS,
		helo: c.Hostname(),
		log:  b.s.opts.Log.With(zap.String("client_ip", ip.String())),
	}
	b.s.track(sess, true)
	return sess, nil
}

// session is one SMTP client conversation. engine/smtpd calls its methods from
// the connection's goroutine only.
type session struct {
	srv      *Server
	conn     *smtpd.Conn
	ip       netip.Addr
	src      config.Source
	tls      bool
	helo     string
	authUser string
	log      *zap.Logger

	// the transaction in progress
	from  *string
	mail  smtp.MailOptions
	rcpts []spool.Rcpt
	gate  gateTxn // mail to our own addresses, suppressed recipients dropped
}

func (s *session) Reset() {
	s.from = nil
	s.mail = smtp.MailOptions{}
	s.rcpts = nil
	s.gate = gateTxn{}
}

// Logout is called when the connection ends (and before a new session
// replaces this one after STARTTLS).
func (s *session) Logout() error {
	s.srv.track(s, false)
	return nil
}

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.Reset()
	if err := checkAddress(from, true); err != nil {
		return toWire(reply.New(553, reply.Status{5, 1, 7}, "sender address syntax invalid: "+err.Error()))
	}
	if opts != nil {
		// RFC 1870 §6.2: refuse a declared size over the limit up front.
		if lim := maxSizeFor(s.src); opts.Size > lim {
			return toWire(reply.New(552, reply.Status{5, 3, 4}, "message size exceeds fixed maximum message size"))
		}
		if opts.RequireTLS && !s.tls {
			// RFC 8689 §2: REQUIRETLS is only valid in a TLS session.
			return toWire(reply.New(530, reply.Status{5, 7, 10}, "REQUIRETLS needs a TLS session"))
		}
		s.mail = *opts
	}
	f := from
	s.from = &f
	return nil
}

// Rcpt adds a recipient, once relaying is allowed (RFC 5321 §3.6.2).
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.from == nil {
		return toWire(reply.New(503, reply.Status{5, 5, 1}, "need MAIL before RCPT"))
	}
	if done, err := s.gateRcpt(to); done { // report addresses: from anyone
		return err
	}
	if !s.src.AlwaysAllowRelaying && s.authUser == "" {
		s.log.Info("relay denied", zap.String("rcpt", to))
		return toWire(reply.New(550, reply.Status{5, 7, 1}, "relaying denied"))
	}
	if err := checkAddress(to, false); err != nil {
		return toWire(reply.New(553, reply.Status{5, 1, 3}, "recipient address syntax invalid: "+err.Error()))
	}
	if done, err := s.gateSuppressed(to); done {
		return err
	}
	r := spool.Rcpt{Addr: to}
	if opts != nil {
		var notify []string
		for _, n := range opts.Notify {
			notify = append(notify, string(n))
		}
		r.Notify = strings.Join(notify, ",")
		if opts.OriginalRecipient != "" {
			// RFC 3461 §4.2: ORCPT=addr-type;xtext, kept decoded as "rfc822;addr".
			typ := strings.ToLower(string(opts.OriginalRecipientType))
			if typ == "" {
				typ = "rfc822"
			}
			r.ORcpt = typ + ";" + opts.OriginalRecipient
		}
	}
	s.rcpts = append(s.rcpts, r)
	return nil
}

// toWire is the one boundary where errors become SMTP replies (STYLE §2.4):
// anything that is not a reply.Error becomes a temporary 451 4.3.0, so that a
// local failure is never a bounce and never leaks internals.
func toWire(err error) error {
	var r *reply.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &r):
	case errors.Is(err, context.DeadlineExceeded):
		r = reply.New(451, reply.Status{4, 4, 5}, "busy, try again later")
	default:
		r = reply.New(451, reply.Status{4, 3, 0}, "local error, try again later")
	}
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.EnhancedCode(r.Status), Message: r.Text}
}

func zapUser(u string) zap.Field { return zap.String("user", u) }
