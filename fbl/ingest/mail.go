package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/fbl/arf"
	"github.com/sluice-mta/sluice/fbl/dsn"
	"github.com/sluice-mta/sluice/fbl/suppress"
	"github.com/sluice-mta/sluice/fbl/unsub"
)

// Kind is what an address of ours receives.
type Kind string

// The kinds of mail Sluice reads itself.
const (
	KindNone   Kind = ""
	KindFBL    Kind = "fbl"    // ARF or JMRP complaint reports
	KindBounce Kind = "bounce" // DSNs and other bounces
	KindUnsub  Kind = "unsub"  // unsub+TOKEN@mailto-domain
)

// MaxSize is the largest report read (arf.MaxSize, dsn.MaxSize).
const MaxSize = arf.MaxSize

// Errors of Ingest; the SMTP and HTTP front ends map them to replies.
var (
	ErrTooLarge  = errors.New("report larger than 10 MiB")
	ErrNotReport = errors.New("not a report")
	ErrForged    = errors.New("trace header or token does not authenticate")
	ErrStore     = errors.New("suppression list unavailable")
)

// Outcomes of Result.
const (
	OutcomeSuppressed   = "suppressed"   // at least one address suppressed
	OutcomeRecorded     = "recorded"     // accounted; no rule suppresses it
	OutcomeUnattributed = "unattributed" // no usable recipient: accounted only
	OutcomeAutoReply    = "auto-reply"   // a vacation or other auto-reply: ignored
)

// Result says what one report did.
type Result struct {
	Kind         Kind     `json:"kind"`
	Format       string   `json:"format,omitempty"`
	FeedbackType string   `json:"feedbackType,omitempty"`
	Recipients   []string `json:"recipients,omitempty"`
	Suppressed   []string `json:"suppressed,omitempty"`
	JobID        string   `json:"jobId,omitempty"`
	Outcome      string   `json:"outcome"`
}

// Claims tells whether rcpt is one of our own addresses, and which kind.
// Bounce addresses include their subaddresses (bounces+TOKEN@domain, VERP).
func (s *Service) Claims(rcpt string) Kind {
	a := strings.ToLower(strings.Trim(strings.TrimSpace(rcpt), "<>"))
	at := strings.LastIndexByte(a, '@')
	if at <= 0 {
		return KindNone
	}
	if s.fbl[a] {
		return KindFBL
	}
	local, domain := a[:at], a[at+1:]
	if base, _, ok := strings.Cut(local, "+"); ok && s.bounce[base+"@"+domain] || s.bounce[a] {
		return KindBounce
	}
	if d := s.o.MailtoDomain; d != "" && strings.EqualFold(domain, d) && strings.HasPrefix(local, unsub.LocalPrefix) {
		return KindUnsub
	}
	return KindNone
}

// Take processes one message received by SMTP for the claimed recipients
// rcpts (all of one kind; the listener keeps kinds apart). The error, if
// any, is one of Ingest's.
func (s *Service) Take(ctx context.Context, kind Kind, rcpts []string, msg []byte) (Result, error) {
	if kind == KindUnsub {
		var res Result
		var errs []error
		for _, r := range rcpts {
			local, _, _ := strings.Cut(r, "@")
			tok, _ := unsub.TokenFromAddress(local)
			res.Kind = KindUnsub
			if err := s.mailtoUnsub(ctx, tok); err != nil {
				errs = append(errs, err)
			}
		}
		res.Outcome = OutcomeSuppressed
		return res, errors.Join(errs...)
	}
	return s.Ingest(ctx, kind, msg)
}

// Ingest reads one report of kind (KindFBL or KindBounce) and acts on it.
func (s *Service) Ingest(ctx context.Context, kind Kind, msg []byte) (Result, error) {
	if len(msg) > MaxSize {
		s.log.Warn("report refused", zap.String("kind", string(kind)), zap.Int("size", len(msg)), zap.String("error", "larger than 10 MiB"))
		return Result{Kind: kind}, ErrTooLarge
	}
	switch kind {
	case KindFBL:
		return s.complaint(ctx, msg)
	case KindBounce:
		return s.bounced(ctx, msg)
	}
	return Result{Kind: kind}, fmt.Errorf("%w: unknown kind %q", ErrNotReport, kind)
}

// complaint handles an ARF or JMRP report. RFC 5965 §3.1: the second part
// holds the machine-readable fields; attribution trusts our trace header
// first (see arf.Report.Recipient).
func (s *Service) complaint(ctx context.Context, msg []byte) (Result, error) {
	res := Result{Kind: KindFBL}
	rep, err := arf.ParseWith(bytes.NewReader(msg), arf.Options{Keys: s.o.Keys, TraceHeader: s.o.TraceHeader})
	if err != nil {
		s.log.Warn("report ignored", zap.String("kind", "fbl"), zap.Int("size", len(msg)), zap.Error(err))
		if errors.Is(err, arf.ErrTooLarge) {
			return res, ErrTooLarge
		}
		return res, fmt.Errorf("%w: %v", ErrNotReport, err)
	}
	res.Format, res.FeedbackType = rep.Format, rep.FeedbackType
	if rep.TraceForged {
		s.log.Warn("forged report ignored", zap.String("kind", "fbl"), zap.String("format", rep.Format),
			zap.String("reporting_mta", rep.ReportingMTA), zap.String("source_ip", rep.SourceIP))
		return res, ErrForged
	}
	job, vmta := rep.XJob, ""
	if rep.Trace != nil {
		job, vmta = rep.Trace.JobID, rep.Trace.VMTA
	}
	res.JobID = job
	rcpt := rep.Recipient
	if rep.Redacted {
		rcpt = "" // a placeholder, not an address (RFC 6590)
	}
	if rcpt == "" && job == "" {
		// Nobody and nothing of ours to charge it to: not accounted.
		s.log.Warn("report not attributed", zap.String("kind", "fbl"), zap.String("format", rep.Format),
			zap.String("feedback_type", rep.FeedbackType), zap.String("reporting_mta", rep.ReportingMTA),
			zap.String("original_message_id", rep.OriginalMessageID))
		res.Outcome = OutcomeUnattributed
		return res, nil
	}
	rec := &acct.Record{
		Type: acct.TypeFeedback, Rcpt: rcpt, Orig: rep.OriginalMailFrom, JobID: job, VMTA: vmta,
		FeedbackType: rep.FeedbackType, Format: rep.Format, UserAgent: rep.UserAgent,
		ReportingMTA: rep.ReportingMTA, ReportedDomain: strings.Join(rep.ReportedDomain, ","),
		RepSourceIP: rep.SourceIP, SrcType: "fbl", Headers: s.acctHeaders(rep.OriginalField),
	}
	if rep.Trace != nil {
		rec.RcvSourceIP = rep.Trace.Source
	}
	if !rep.ArrivalDate.IsZero() {
		rec.TimeQueued = rep.ArrivalDate
	}
	s.o.Acct.Write(rec)
	if rep.FeedbackType != "not-spam" {
		for _, t := range s.guard.Complaint(job, vmta) {
			s.queue(event{trip: &t})
		}
	}
	if rcpt == "" {
		s.log.Warn("report not attributed to a recipient", zap.String("kind", "fbl"), zap.String("format", rep.Format),
			zap.String("feedback_type", rep.FeedbackType), zap.String("job_id", job))
		res.Outcome = OutcomeUnattributed
		return res, nil
	}
	res.Recipients = []string{rcpt}
	if !slices.Contains(s.o.SuppressTypes, rep.FeedbackType) {
		res.Outcome = OutcomeRecorded
		return res, nil
	}
	note := rep.Format + " " + rep.FeedbackType
	if rep.ReportingMTA != "" {
		note += " from " + rep.ReportingMTA
	}
	if err := s.suppress(ctx, suppress.Entry{Addr: rcpt, Reason: suppress.Complaint, Note: note}); err != nil {
		return res, err
	}
	res.Suppressed, res.Outcome = []string{rcpt}, OutcomeSuppressed
	return res, nil
}

// bounced handles a DSN (RFC 3464) or a non-standard bounce; auto-replies
// (RFC 3834) are ignored.
func (s *Service) bounced(ctx context.Context, msg []byte) (Result, error) {
	res := Result{Kind: KindBounce}
	rep, err := dsn.ParseWith(bytes.NewReader(msg), dsn.Options{Keys: s.o.Keys, TraceHeader: s.o.TraceHeader, Classifier: s.o.Classifier})
	if err != nil {
		s.log.Warn("report ignored", zap.String("kind", "bounce"), zap.Int("size", len(msg)), zap.Error(err))
		if errors.Is(err, dsn.ErrTooLarge) {
			return res, ErrTooLarge
		}
		return res, fmt.Errorf("%w: %v", ErrNotReport, err)
	}
	res.Format = rep.Format
	if rep.AutoReply {
		s.log.Info("auto-reply ignored", zap.String("from", rep.From), zap.String("subject", rep.Subject))
		res.Outcome = OutcomeAutoReply
		return res, nil
	}
	if rep.TraceForged {
		s.log.Warn("forged report ignored", zap.String("kind", "bounce"), zap.String("from", rep.From), zap.String("reporting_mta", rep.ReportingMTA))
		return res, ErrForged
	}
	job, vmta := "", ""
	if rep.Trace != nil {
		job, vmta = rep.Trace.JobID, rep.Trace.VMTA
	}
	res.JobID = job
	res.Outcome = OutcomeRecorded
	var errs []error
	hdrs := s.acctHeaders(rep.OriginalField)
	for _, r := range rep.Recipients {
		if r.Action != bounce.ActionFailed && r.Action != bounce.ActionDelayed && r.Action != "" {
			continue // delivered, relayed, expanded: not a bounce
		}
		addr := r.Final
		if rep.Trace != nil && rep.Trace.Rcpt != "" && len(rep.Recipients) == 1 {
			addr = rep.Trace.Rcpt // what we sent, whatever the remote rewrote
		}
		if addr == "" {
			continue
		}
		res.Recipients = append(res.Recipients, addr)
		s.o.Acct.Write(&acct.Record{
			Type: acct.TypeRemoteBounce, Rcpt: addr, ORcpt: r.Original, JobID: job, VMTA: vmta,
			DSNAction: r.Action, DSNStatus: r.Status, DSNDiag: r.Diagnostic, DSNMta: r.RemoteMTA,
			BounceCat: r.Category, Format: rep.Format, DSNReportingMTA: rep.ReportingMTA, SrcType: "bounce",
			Headers: hdrs,
		})
		var e *suppress.Entry
		switch {
		case r.Permanent() && slices.Contains(s.o.HardCategories, r.Category):
			e = &suppress.Entry{Addr: addr, Reason: suppress.HardBounce, Note: "dsn " + r.Status + " " + r.Category}
		case !r.Permanent() || r.Category == "quota-issues":
			e = s.softBounce(addr)
		}
		if e == nil {
			continue
		}
		if err := s.suppress(ctx, *e); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Suppressed = append(res.Suppressed, addr)
	}
	if len(res.Suppressed) > 0 {
		res.Outcome = OutcomeSuppressed
	} else if len(res.Recipients) == 0 {
		s.log.Warn("report not attributed", zap.String("kind", "bounce"), zap.String("format", rep.Format), zap.String("from", rep.From))
		res.Outcome = OutcomeUnattributed
	}
	return res, errors.Join(errs...)
}

// mailtoUnsub handles mail to unsub+TOKEN@mailto-domain (RFC 2369 §3.2).
func (s *Service) mailtoUnsub(ctx context.Context, token string) error {
	tok, err := unsub.ParseToken(token, s.o.UnsubKeys)
	if err != nil {
		s.log.Warn("forged unsubscribe ignored", zap.String("via", "mailto"), zap.Error(err))
		return ErrForged
	}
	return s.Unsubscribe(ctx, tok.Rcpt, tok.Scope, tok.Job, "mailto")
}

// Unsubscribe suppresses rcpt in scope and writes the opt-out record (an f
// record with feedbackType opt-out): the compliance log. It is the
// callback of unsub.Handler (via "one-click") and of the mailto form.
func (s *Service) Unsubscribe(ctx context.Context, rcpt, scope, job, via string) error {
	if err := s.suppress(ctx, suppress.Entry{Addr: rcpt, Scope: scope, Reason: suppress.Unsubscribe, Note: via}); err != nil {
		return err
	}
	s.o.Acct.Write(&acct.Record{Type: acct.TypeFeedback, Rcpt: rcpt, JobID: job, FeedbackType: "opt-out",
		Format: "list-unsubscribe", UserAgent: via, SrcType: "unsubscribe"})
	return nil
}

// suppress adds e now (a report is acknowledged only once it took effect).
func (s *Service) suppress(ctx context.Context, e suppress.Entry) error {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.o.Store.Add(actx, e); err != nil {
		if errors.Is(err, suppress.ErrInvalid) {
			s.log.Warn("report names no valid address", zap.String("rcpt", e.Addr), zap.Error(err))
			return nil
		}
		s.log.Error("suppression failed", zap.String("rcpt", e.Addr), zap.String("reason", string(e.Reason)), zap.Error(err))
		return fmt.Errorf("%w: %v", ErrStore, err)
	}
	s.log.Info("recipient suppressed", zap.String("rcpt", e.Addr), zap.String("scope", e.Scope),
		zap.String("reason", string(e.Reason)), zap.String("note", e.Note))
	return nil
}
