// Package dsn parses asynchronous bounces: delivery status notifications of
// RFC 3464 (inside an RFC 6522 multipart/report, or with their fields quoted
// in text when the MIME structure is broken) and, by heuristics, the common
// non-standard bounces (qmail, Exim, Sendmail, old Postfix, Exchange and
// Office 365 text NDRs, old Gmail and Yahoo, OpenSMTPD, Amazon SES
// notifications). It recognises auto-replies (RFC 3834), which are never
// bounces. Each failed recipient is classified into a bounce category with
// engine/bounce. Parsing is bounded (MaxSize and the MIME reader's caps) and
// never panics.
package dsn

import (
	"errors"
	"io"
	"strings"

	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/fbl/internal/findref"
	"github.com/sluice-mta/sluice/fbl/internal/mailmsg"
	"github.com/sluice-mta/sluice/fbl/trace"
)

// MaxSize is the largest message Parse reads (10 MiB).
const MaxSize = 10 << 20

// maxRecipients caps the recipients taken from one report.
const maxRecipients = 1000

// Formats of a Report.
const (
	FormatDSN  = "dsn"  // RFC 3464 fields
	FormatText = "text" // a non-standard bounce read by heuristics
	FormatSES  = "ses"  // an Amazon SES bounce notification (JSON)
)

// Errors returned by Parse.
var (
	ErrTooLarge  = errors.New("dsn: message larger than 10 MiB")
	ErrNotBounce = errors.New("dsn: neither a bounce with a recipient nor an auto-reply")
)

// Report is what a bounce says. For an auto-reply (a vacation or
// out-of-office reply, or other automatic mail that is not a bounce, RFC
// 3834), AutoReply is set and Recipients is empty: such mail is never a
// bounce.
type Report struct {
	AutoReply bool
	Format    string // FormatDSN, FormatText or FormatSES; "" for an auto-reply
	From      string // the address in the report's From field
	Subject   string // decoded (RFC 2047) where the charset allows

	ReportingMTA      string // RFC 3464 §2.2.2, without its "dns;" type
	OriginalMessageID string // of the returned message, without angle brackets

	// Trace is Sluice's trace header from the returned message when it
	// authenticates: Trace.Rcpt is the recipient as Sluice sent it, the
	// address to suppress for a bounce about one recipient. TraceForged is
	// set when one is present and none authenticates: log the report and
	// do not act on it.
	Trace       *trace.Ref
	TraceForged bool

	Recipients []Recipient

	orig mailmsg.Header // the returned message's header; see OriginalField
}

// OriginalField returns the first field called name (any case) of the
// returned message or header block, unfolded and trimmed, with encoded
// words left as they are; "" when the bounce returned none or it has no
// such field. It feeds the acct header_* columns.
func (rep *Report) OriginalField(name string) string { return rep.orig.Get(name) }

// Recipient is one per-recipient result (RFC 3464 §2.3).
type Recipient struct {
	// Final is the failed address: Final-Recipient when it is an address,
	// else Original-Recipient, else the matching X-Failed-Recipients entry
	// (a pipe command or a source route is not an address).
	Final      string
	Original   string // Original-Recipient (the ORCPT), "" if none
	Action     string // lower case: failed, delayed, delivered, relayed, expanded
	Status     string // RFC 3463 "5.1.1"; "" when the report states none
	Code       int    // the SMTP reply code in the diagnostic, 0 if none
	Diagnostic string // Diagnostic-Code, or the text the heuristics read
	RemoteMTA  string // without its "dns;" type
	// Category is the engine/bounce category of a failed or delayed
	// recipient, "" for delivered, relayed and expanded.
	Category string
}

// Permanent reports whether the recipient failed for good: a 5.x.x status,
// or with no status a 5xx reply, or with neither an Action of failed.
// Delayed recipients, and failed ones with a 4.x.x status (an MTA that gave
// up on a temporary error), are not permanent.
func (r Recipient) Permanent() bool {
	switch {
	case r.Status != "":
		return r.Status[0] == '5'
	case r.Code != 0:
		return r.Code/100 == 5
	}
	return r.Action == bounce.ActionFailed
}

// Options tune ParseWith.
type Options struct {
	Keys        trace.Keys         // secrets for the trace header
	TraceHeader string             // its name; trace.HeaderName when empty
	Classifier  *bounce.Classifier // nil means bounce.NewClassifier(nil)
}

// Parse reads one bounce or auto-reply, classifying with c (nil for the
// built-in rules).
func Parse(r io.Reader, k trace.Keys, c *bounce.Classifier) (*Report, error) {
	return ParseWith(r, Options{Keys: k, Classifier: c})
}

// ParseWith reads one bounce or auto-reply. It returns ErrTooLarge for input
// over MaxSize, and ErrNotBounce for mail that is neither a bounce naming a
// recipient nor an auto-reply.
func ParseWith(r io.Reader, o Options) (*Report, error) {
	raw, err := mailmsg.ReadLimited(r, MaxSize)
	if errors.Is(err, mailmsg.ErrTooLarge) {
		return nil, ErrTooLarge
	}
	if err != nil {
		return nil, err
	}
	c := o.Classifier
	if c == nil {
		c = bounce.NewClassifier(nil)
	}
	root := mailmsg.Parse(raw)
	if strings.EqualFold(root.Params["report-type"], "feedback-report") { // RFC 5965: a complaint, for fbl/arf
		return nil, ErrNotBounce
	}
	rep := &Report{Subject: mailmsg.DecodeWords(root.Header.Get("Subject"))}
	if from := mailmsg.AddressList(root.Header.Get("From")); len(from) > 0 {
		rep.From = from[0]
	}
	failed := mailmsg.AddressList(root.Header.Get("X-Failed-Recipients"))
	text := humanText(root)

	// 1. RFC 3464 fields, in a delivery-status part or quoted in the text.
	perMsg, groups := statusGroups(root)
	if len(groups) == 0 {
		perMsg, groups = fieldGroups([]byte(text))
	}
	rep.Recipients = recipientsFromGroups(groups, failed, c)
	if len(rep.Recipients) > 0 {
		rep.Format = FormatDSN
		rep.ReportingMTA = mailmsg.TypedName(perMsg.Get("Reporting-MTA"))
	}

	// 2. An auto-reply, then the heuristics for non-standard bounces.
	human, copied := splitCopy(text)
	if len(rep.Recipients) == 0 {
		sig := autoReply(root.Header)
		bounceLike := looksLikeBounce(root.Header, rep.From, rep.Subject, human)
		switch {
		// A bounce's subject may quote ours ("Undeliverable: Out of office
		// sale"), so an auto-reply subject is decisive only on a message
		// that does not present itself as a bounce.
		case sig.header, sig.subject && !bounceSender(root.Header, rep.From, rep.Subject):
			rep.AutoReply = true
		case bounceLike:
			rep.Recipients, rep.Format = heuristics(human, text, rep.Subject, failed, c)
		}
		if len(rep.Recipients) == 0 && !rep.AutoReply {
			// What is left: an auto-reply by its subject or by weak signs,
			// or a bounce (or other mail) naming no recipient.
			if !sig.subject && (!sig.weak || bounceLike) {
				return nil, ErrNotBounce
			}
			rep.AutoReply = true
		}
	}

	// 3. The returned message: its Message-ID and our trace header.
	original := returned(root)
	if original == nil && copied != "" {
		if m := mailmsg.Parse([]byte(copied)); len(m.Header) > 0 {
			original = m
		}
	}
	if original != nil {
		rep.orig = original.Header
		rep.OriginalMessageID = mailmsg.MessageID(original.Header.Get("Message-ID"))
	}
	rep.Trace, rep.TraceForged = findref.Find(original, root, o.TraceHeader, o.Keys)
	return rep, nil
}

// returned finds the returned message or header block (RFC 3464 §2,
// RFC 6522 §3 third part): the first embedded message in the report.
func returned(root *mailmsg.Part) *mailmsg.Part {
	var found *mailmsg.Part
	root.Walk(func(p *mailmsg.Part) bool {
		if found == nil && p.Message != nil && len(p.Message.Header) > 0 {
			found = p.Message
		}
		return found == nil
	})
	return found
}

// maxText caps the human-readable text the heuristics look at.
const maxText = 512 << 10

// humanText joins the readable text of the report outside any returned
// message: its text/plain parts, or its HTML parts as text when it has no
// plain text. A part declared multipart whose boundaries were lost counts
// as text.
func humanText(root *mailmsg.Part) string {
	var plain, html strings.Builder
	root.Walk(func(p *mailmsg.Part) bool {
		switch {
		case p.Message != nil:
			return false // the returned message is not the report's text
		case p.IsText() && !mailmsg.IsEmbedded(p.MediaType):
			appendCapped(&plain, string(p.Body))
		case p.MediaType == "text/html":
			appendCapped(&html, htmlText(p.Body))
		}
		return true
	})
	if plain.Len() == 0 {
		return html.String()
	}
	return plain.String()
}

func appendCapped(b *strings.Builder, s string) {
	if room := maxText - b.Len(); room > 0 {
		if len(s) > room {
			s = s[:room]
		}
		b.WriteString(s)
		b.WriteString("\n")
	}
}
