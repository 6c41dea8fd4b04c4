package listener

import (
	"bytes"
	"context"
	"errors"
	"io"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/reply"
)

// Gate is what the listener asks the feedback-loop side (package fbl):
// which recipients are Sluice's own report addresses, what to do with mail
// to them, and which recipients are suppressed.
type Gate interface {
	// Claims returns the kind of one of our own addresses ("fbl",
	// "bounce", "unsub"), or "" for any other recipient. Mail to them is
	// accepted from anyone, without relay permission, and not relayed.
	Claims(rcpt string) string
	// Take processes a message to claimed recipients of one kind. A
	// *reply.Error is the reply; nil means 250.
	Take(ctx context.Context, kind string, rcpts []string, msg []byte) error
	// Suppressed reports whether rcpt is on the suppression list for
	// scope ("" global, else the tenant).
	Suppressed(ctx context.Context, rcpt, scope string) (bool, error)
	// Dropped records a suppressed recipient accepted and dropped (a source
	// with on-suppressed = "accept-and-drop"): an accounting record.
	Dropped(from, rcpt, scope, sourceIP string)
}

// maxReportSize caps mail to our own addresses: reports are read whole.
const maxReportSize = 10 << 20

// gateTimeout bounds one suppression lookup or report.
const gateTimeout = 30 * time.Second

// gateTxn is the transaction state of mail to our own addresses.
type gateTxn struct {
	kind    string   // the kind of the claimed recipients, "" if none
	own     []string // claimed recipients
	dropped int      // suppressed recipients accepted and dropped
}

// gateRcpt claims a recipient that is one of our own addresses. Reports
// and relayed mail do not share a transaction: RFC 5321 §3.3 lets the
// client send the rest again after a 452.
func (s *session) gateRcpt(to string) (bool, error) {
	g := s.srv.opts.Gate
	if g == nil {
		return false, nil
	}
	kind := g.Claims(to)
	if kind == "" {
		if s.gate.kind != "" {
			return true, toWire(reply.New(452, reply.Status{4, 5, 3}, "send other recipients in a new transaction"))
		}
		return false, nil
	}
	if err := checkAddress(to, false); err != nil {
		return true, toWire(reply.New(553, reply.Status{5, 1, 3}, "recipient address syntax invalid: "+err.Error()))
	}
	if len(s.rcpts) > 0 || s.gate.dropped > 0 || s.gate.kind != "" && s.gate.kind != kind {
		return true, toWire(reply.New(452, reply.Status{4, 5, 3}, "send report addresses in a new transaction"))
	}
	if len(s.gate.own) >= 100 {
		return true, toWire(reply.New(452, reply.Status{4, 5, 3}, "too many recipients"))
	}
	s.gate.kind = kind
	s.gate.own = append(s.gate.own, to)
	return true, nil
}

// gateSuppressed refuses a suppressed recipient with 550 5.7.1, or, for a
// source with on-suppressed = "accept-and-drop", accepts it and drops it.
func (s *session) gateSuppressed(to string) (bool, error) {
	g := s.srv.opts.Gate
	if g == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), gateTimeout)
	defer cancel()
	scope := s.authUser
	sup, err := g.Suppressed(ctx, to, scope)
	if err != nil {
		s.log.Warn("suppression check failed", zap.String("rcpt", to), zap.Error(err))
		return true, toWire(reply.Wrap(451, reply.Status{4, 3, 0}, "local error, try again later", err))
	}
	if !sup {
		return false, nil
	}
	if s.src.OnSuppressed == config.OnSuppressedDrop {
		from := ""
		if s.from != nil {
			from = *s.from
		}
		g.Dropped(from, to, scope, s.ip.String())
		s.gate.dropped++
		s.log.Info("suppressed recipient dropped", zap.String("rcpt", to))
		return true, nil
	}
	s.log.Info("suppressed recipient refused", zap.String("rcpt", to))
	return true, toWire(reply.New(550, reply.Status{5, 7, 1}, "recipient suppressed"))
}

// gateData handles DATA for a transaction of reports, or of suppressed
// recipients only (read and discarded, 250).
func (s *session) gateData(r io.Reader) (bool, error) {
	if s.gate.kind == "" {
		if len(s.rcpts) == 0 && s.gate.dropped > 0 && s.from != nil {
			io.Copy(io.Discard, r)
			s.gate = gateTxn{}
			return true, nil
		}
		return false, nil
	}
	t := s.gate
	s.gate = gateTxn{}
	var buf bytes.Buffer
	_, err := buf.ReadFrom(io.LimitReader(r, maxReportSize+1))
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code == 552 || buf.Len() > maxReportSize {
			return true, s.reportTooLarge(t, buf.Len())
		}
		if errors.As(err, &se) { // the DATA reader's own refusal (a long line)
			s.log.Info("report refused", zap.String("kind", t.kind), zap.Int("smtp_code", se.Code), zap.String("error", se.Message))
			return true, se
		}
		return true, toWire(reply.Wrap(451, reply.Status{4, 3, 0}, "error reading message", err))
	}
	if buf.Len() > maxReportSize {
		return true, s.reportTooLarge(t, buf.Len())
	}
	ctx, cancel := context.WithTimeout(context.Background(), gateTimeout)
	defer cancel()
	if err := s.srv.opts.Gate.Take(ctx, t.kind, t.own, buf.Bytes()); err != nil {
		var re *reply.Error
		if errors.As(err, &re) {
			s.log.Info("report refused", zap.String("kind", t.kind), zap.Int("size", buf.Len()), zap.Object("reply", re))
		}
		return true, toWire(err)
	}
	return true, nil
}

func (s *session) reportTooLarge(t gateTxn, n int) error {
	s.log.Warn("report refused", zap.String("kind", t.kind), zap.Int("size_at_least", n), zap.String("error", "larger than 10 MiB"))
	return toWire(reply.New(552, reply.Status{5, 3, 4}, "report larger than 10 MiB"))
}
