package listener

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/reply"
	"github.com/sluice-mta/sluice/engine/smtpd"
	"github.com/sluice-mta/sluice/engine/spool"
)

// maxLineLength is RFC 5321 §4.5.3.1.6: 1000 octets including CRLF.
const maxLineLength = 998

// putTimeout bounds the wait for the spool's synced commit.
const putTimeout = 60 * time.Second

// Data reads the message, checks it, rewrites its header and makes it
// durable. The 250 that engine/smtpd sends when Data returns nil therefore means
// "fsynced" (RFC 5321 §6.1).
func (s *session) Data(r io.Reader) error {
	if done, err := s.gateData(r); done { // reports, or every recipient dropped
		return err
	}
	if s.from == nil || len(s.rcpts) == 0 {
		return toWire(reply.New(503, reply.Status{5, 5, 1}, "need RCPT before DATA"))
	}
	limit := maxSizeFor(s.src)
	// Size the buffer from SIZE= when the client declared it (RFC 1870),
	// so a message is read without regrowing.
	hint := int64(32 << 10)
	if s.mail.Size > 0 && s.mail.Size <= limit {
		hint = min(s.mail.Size+1024, 4<<20) // a declared size alone does not claim memory
	}
	buf := getReadBuf(hint)
	defer putReadBuf(buf)
	_, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	raw := buf.Bytes()
	if err != nil {
		if errors.Is(err, smtpd.ErrLineTooLong) {
			// engine/smtpd reads on to the final dot; the session goes on.
			return toWire(reply.New(554, reply.Status{5, 6, 0}, "message line too long (RFC 5321 §4.5.3.1.6)"))
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code == 552 {
			return toWire(reply.New(552, reply.Status{5, 3, 4}, "message size exceeds fixed maximum message size"))
		}
		return toWire(reply.Wrap(451, reply.Status{4, 3, 0}, "error reading message", err))
	}
	if int64(len(raw)) > limit {
		return toWire(reply.New(552, reply.Status{5, 3, 4}, "message size exceeds fixed maximum message size"))
	}
	if rerr := checkBody(raw); rerr != nil {
		s.log.Info("message refused", zap.Object("reply", rerr))
		return toWire(rerr)
	}

	id := s.srv.opts.Spool.NewID()
	now := s.srv.opts.Now()
	h := splitHeader(raw)
	env := spool.Envelope{
		From:     *s.from,
		EnvID:    s.mail.EnvelopeID,
		Ret:      string(s.mail.Return),
		SMTPUTF8: s.mail.UTF8,
		// Many clients declare BODY=8BITMIME for every message; only a body
		// that really has 8-bit octets needs it on delivery (RFC 6152 §3).
		Body8Bit:   s.mail.Body == smtp.Body8BitMIME && has8Bit(raw),
		Received:   now,
		SourceIP:   s.ip.String(),
		AuthUser:   s.authUser,
		BounceDSN:  s.src.BounceDSN,
		RequireTLS: s.mail.RequireTLS, // RFC 8689 §4.1: tag the message
		VMTA:       s.src.DefaultVirtualMTA,
	}
	if s.src.ProcessXJob {
		if v, ok := h.take("X-Job"); ok {
			env.JobID = v
		}
	}
	if v := s.srv.policy.Load().userVMTA[s.authUser]; v != "" && s.authUser != "" {
		env.VMTA = v // an authenticated user's default is more specific than the source's
	}
	if s.src.ProcessXVirtualMTA {
		if v, ok := h.take("X-Virtual-MTA"); ok {
			env.VMTA = v
		}
	}
	if vm := s.srv.opts.VMTAs; vm != nil && !vm.Known(env.VMTA) {
		// Refuse rather than accept mail that could not leave as asked.
		return toWire(reply.New(550, reply.Status{5, 3, 5}, "unknown virtual MTA"))
	}
	var b bytes.Buffer
	b.Grow(len(raw) + 512)
	if s.src.AddReceivedHeader == nil || *s.src.AddReceivedHeader {
		b.WriteString(s.receivedHeader(id, now))
	}
	if !h.has("Message-ID") { // RFC 5322 §3.6.4: SHOULD be present; add it as a submission service may
		fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", id, s.srv.opts.Hostname)
	}
	h.writeTo(&b)
	env.Size = int64(b.Len())

	m := &spool.Message{ID: id, Env: env, Rcpts: s.rcpts}
	ctx, cancel := context.WithTimeout(context.Background(), putTimeout)
	defer cancel()
	if err := s.srv.submit.Submit(ctx, m, b.Bytes()); err != nil {
		var r *reply.Error
		if errors.As(err, &r) {
			s.log.Info("message refused", zap.String("msg_id", id), zap.Object("reply", r))
			return toWire(r)
		}
		if errors.Is(err, syscall.ENOSPC) { // spool.ErrDiskFull: RFC 5321 §4.2.3 452, RFC 3463 4.3.1
			s.log.Warn("spool full, message refused", zap.String("msg_id", id), zap.Error(err))
			return toWire(reply.Wrap(452, reply.Status{4, 3, 1}, "insufficient system storage, try again later", err))
		}
		s.log.Error("spool put failed", zap.String("msg_id", id), zap.Error(err))
		return toWire(reply.Wrap(451, reply.Status{4, 3, 0}, "local error in processing, try again later", err))
	}
	s.rcpts = nil
	return nil
}

// checkBody enforces the line rules of RFC 5321 §2.3.8 and §4.5.3.1.6: lines
// end in CRLF (a bare LF or CR is refused, which also closes the door to
// SMTP smuggling), no NUL octets, and no line over 998 octets.
func checkBody(b []byte) *reply.Error {
	if bodyClean(b) {
		return nil
	}
	lineStart := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case 0:
			return reply.New(554, reply.Status{5, 6, 0}, "NUL character in message not allowed")
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return reply.New(554, reply.Status{5, 6, 0}, "bare CR in message not allowed (RFC 5321 §2.3.8)")
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return reply.New(554, reply.Status{5, 6, 0}, "bare LF in message not allowed (RFC 5321 §2.3.8)")
			}
			if i-1-lineStart > maxLineLength {
				return reply.New(554, reply.Status{5, 6, 0}, "message line longer than 998 characters (RFC 5321 §4.5.3.1.6)")
			}
			lineStart = i + 1
		}
	}
	if len(b)-lineStart > maxLineLength {
		return reply.New(554, reply.Status{5, 6, 0}, "message line longer than 998 characters (RFC 5321 §4.5.3.1.6)")
	}
	return nil
}

// receivedHeader is the trace field of RFC 5321 §4.4.
func (s *session) receivedHeader(id string, now time.Time) string {
	with := "ESMTP"
	if s.tls {
		with += "S"
	}
	if s.authUser != "" {
		with += "A"
	}
	if s.mail.UTF8 {
		with = "UTF8SMTP" + strings.TrimPrefix(with, "ESMTP") // RFC 6531 §3.7.3: UTF8SMTP[S][A]
	}
	helo := sanitizeHelo(s.helo)
	forClause := ""
	if len(s.rcpts) == 1 {
		forClause = "\r\n\tfor <" + s.rcpts[0].Addr + ">"
	}
	return fmt.Sprintf("Received: from %s ([%s])\r\n\tby %s (Sluice) with %s id %s%s;\r\n\t%s\r\n",
		helo, s.ip, s.srv.opts.Hostname, with, id, forClause, now.Format(time.RFC1123Z))
}

func sanitizeHelo(h string) string {
	if h == "" {
		return "unknown"
	}
	var b strings.Builder
	for _, r := range h {
		if r > 0x20 && r < 0x7f && r != '(' && r != ')' && r != ';' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// has8Bit reports whether b holds an octet above 127.
func has8Bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
