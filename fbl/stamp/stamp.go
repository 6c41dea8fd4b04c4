// Package stamp adds Sluice's headers to outgoing mail: at spool time,
// before DKIM signing, the Feedback-ID (Gmail) and the List-Unsubscribe
// pair of RFC 2369 and RFC 8058; at delivery time, per transaction, the
// signed trace header (fbl/trace), which names the recipient.
package stamp

import (
	"bytes"
	"context"
	"strings"

	"github.com/sluice-mta/sluice/engine/queue"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/fbl/trace"
	"github.com/sluice-mta/sluice/fbl/unsub"
)

// Options configure a Stamper. Zero values leave the header out.
type Options struct {
	Keys        trace.Keys // trace header secrets; empty Current: no trace header
	TraceHeader string     // [trace.HeaderName]
	FeedbackID  string     // template "{job}:{vmta}:{user}:{source}:SENDERID"; "" none

	UnsubKey     []byte // token secret; nil: no List-Unsubscribe
	BaseURL      string // one-click URL base (https)
	MailtoDomain string // unsub+TOKEN@ this domain
}

// Stamper adds the headers. It holds no state beyond its options.
type Stamper struct{ o Options }

// New returns a Stamper.
func New(o Options) *Stamper {
	if o.TraceHeader == "" {
		o.TraceHeader = trace.HeaderName
	}
	return &Stamper{o: o}
}

// Scope is the suppression scope of a message: its tenant (the AUTH user
// that injected it), or "" (global) for mail from a relaying source.
func Scope(env *spool.Envelope) string { return env.AuthUser }

// Transform is the spool-time step (a submit.Transform): it removes any
// trace header the injector supplied (only ours may be trusted), then adds
// Feedback-ID and, unless the injector set List-Unsubscribe, the
// List-Unsubscribe and List-Unsubscribe-Post headers (RFC 8058 §3.1). The
// unsubscribe token names one recipient, so the pair is added only to
// single-recipient messages: a shared header would unsubscribe one person
// on behalf of all.
func (st *Stamper) Transform(_ context.Context, m *spool.Message, body []byte) ([]byte, error) {
	hdrEnd := headerEnd(body)
	head := body[:hdrEnd]
	var add bytes.Buffer
	if len(st.o.Keys.Current) > 0 && hasField(head, st.o.TraceHeader) {
		head = dropField(head, st.o.TraceHeader)
	}
	if st.o.FeedbackID != "" && !hasField(head, "Feedback-ID") {
		if v := feedbackID(st.o.FeedbackID, &m.Env); v != "" {
			add.WriteString("Feedback-ID: " + v + "\r\n")
		}
	}
	if len(st.o.UnsubKey) > 0 && len(m.Rcpts) == 1 && !hasField(head, "List-Unsubscribe") {
		tok := unsub.MakeToken(m.Rcpts[0].Addr, Scope(&m.Env), m.Env.JobID, st.o.UnsubKey)
		lu, lup := unsub.Headers(st.o.BaseURL, st.o.MailtoDomain, tok)
		if lu != "" {
			add.WriteString("List-Unsubscribe: " + fold(lu) + "\r\n")
		}
		if lup != "" && !hasField(head, "List-Unsubscribe-Post") {
			add.WriteString("List-Unsubscribe-Post: " + lup + "\r\n")
		}
	}
	if add.Len() == 0 && len(head) == hdrEnd {
		return body, nil
	}
	out := make([]byte, 0, len(body)+add.Len())
	out = append(out, head...)
	out = append(out, add.Bytes()...)
	return append(out, body[hdrEnd:]...), nil
}

// Decorate is the delivery-time step (queue.Options.Decorate): the trace
// header for this transaction. With one recipient it names it; a
// transaction with several leaves the recipient out, and a report about it
// is attributed by Original-Rcpt-To instead (arf falls back to it).
func (st *Stamper) Decorate(t queue.Transaction) []byte {
	if len(st.o.Keys.Current) == 0 {
		return nil
	}
	r := trace.Ref{JobID: t.Env.JobID, VMTA: t.VMTA, Source: t.Env.SourceIP, MsgID: t.MsgID}
	if len(t.Rcpts) == 1 {
		r.Rcpt = t.Rcpts[0]
	}
	return []byte(st.o.TraceHeader + ": " + trace.Encode(r, st.o.Keys) + "\r\n")
}

// feedbackID expands the template: each ':'-separated part has {job},
// {vmta}, {user} and {source} replaced; parts left empty are dropped, and
// the last part is the fixed sender id. Values are cut to 64 bytes, and a
// colon, space, control or non-ASCII byte in them becomes '-'.
func feedbackID(tmpl string, env *spool.Envelope) string {
	parts := strings.Split(tmpl, ":")
	r := strings.NewReplacer("{job}", clean(env.JobID), "{vmta}", clean(env.VMTA),
		"{user}", clean(env.AuthUser), "{source}", clean(env.SourceIP))
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		if p = r.Replace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, ":")
}

func clean(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	b := []byte(s)
	for i, c := range b {
		if c == ':' || c <= ' ' || c >= 0x7f || c == '{' || c == '}' {
			b[i] = '-'
		}
	}
	return string(b)
}

// fold breaks a List-Unsubscribe value after its comma, keeping lines under
// 998 octets (RFC 5322 §2.1.1, §3.2.2).
func fold(v string) string { return strings.ReplaceAll(v, ">, <", ">,\r\n <") }
