// Package arf parses complaint reports: the Abuse Reporting Format of RFC
// 5965 inside an RFC 6522 multipart/report, with the redactions of RFC 6590
// and the authentication-failure reports of RFC 6591, and Microsoft's older
// JMRP reports. It works out which recipient a report is about, trusting
// Sluice's own authenticated trace header before anything the report says.
// Parsing is bounded (MaxSize, and the caps of the MIME reader) and never
// panics; a Report is plain data.
package arf

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mta/sluice/fbl/internal/findref"
	"github.com/sluice-mta/sluice/fbl/internal/mailmsg"
	"github.com/sluice-mta/sluice/fbl/trace"
)

// MaxSize is the largest report Parse reads (10 MiB).
const MaxSize = 10 << 20

// Formats of a Report.
const (
	FormatARF  = "arf"
	FormatJMRP = "jmrp"
)

// Where Report.Recipient came from.
const (
	FromTrace            = "trace"             // Sluice's authenticated trace header
	FromOriginalRcptTo   = "original-rcpt-to"  // RFC 5965 §3.2 Original-Rcpt-To
	FromRemovalRecipient = "removal-recipient" // Removal-Recipient of early ARF drafts (opt-out reports)
	FromHmXmr            = "x-hmxmr"           // X-HmXmrOriginalRecipient of a JMRP report
	FromOriginalTo       = "original-to"       // the To field of the returned original
)

// Errors returned by Parse.
var (
	ErrTooLarge  = errors.New("arf: report larger than 10 MiB")
	ErrNotReport = errors.New("arf: not a feedback report (no message/feedback-report part, not JMRP)")
)

// Report is what a complaint report says, and whom it is about.
type Report struct {
	Format string // FormatARF or FormatJMRP

	// From the machine-readable part (RFC 5965 §3.1, §3.2). FeedbackType is
	// lower case: abuse, fraud, virus, other, not-spam (RFC 5965 §7.3),
	// auth-failure (RFC 6591), or whatever else a report says, such as the
	// opt-out of early drafts; "" when absent. JMRP reports carry no type;
	// every one of them is a user's junk complaint, so they get "abuse".
	FeedbackType     string
	UserAgent        string
	Version          string
	OriginalMailFrom string
	OriginalRcptTo   []string // the addresses of every Original-Rcpt-To field
	ArrivalDate      time.Time
	ReportingMTA     string // the host name, without its "dns;" type
	SourceIP         string
	ReportedDomain   []string
	Incidents        int
	AuthFailure      string // RFC 6591 §3.1 Auth-Failure (dmarc, spf, dkim …)

	// From the returned original (message/rfc822 or text/rfc822-headers).
	OriginalMessageID string // without angle brackets
	XJob              string // the X-Job field (PowerMTA's job id header)

	// Trace is Sluice's trace header when it authenticates; nil otherwise.
	// TraceForged is set when a trace header is present and none
	// authenticates: such a report must be logged and not acted on, and
	// Recipient is then left empty.
	Trace       *trace.Ref
	TraceForged bool

	// Recipient is whom the report is about: the trace header's recipient,
	// else the first Original-Rcpt-To (or Removal-Recipient), else a JMRP
	// report's X-HmXmrOriginalRecipient, else the original's To when it is a
	// single address. Recipients holds every address so attributed (a report
	// may list several Original-Rcpt-To); RecipientSource says where they
	// came from. Empty when the report does not say.
	Recipient       string
	Recipients      []string
	RecipientSource string
	// Redacted is set when the report declares that it redacted addresses
	// (a Redacted-Address field, RFC 6590) and the recipient does not come
	// from the trace header: it is then likely a placeholder and must not be
	// suppressed.
	Redacted bool

	orig mailmsg.Header // the returned original's header; see OriginalField
}

// OriginalField returns the first field called name (any case) of the
// returned original message or header block, unfolded and trimmed, with
// encoded words left as they are; "" when the report returned no original
// or it has no such field. It feeds the acct header_* columns.
func (rep *Report) OriginalField(name string) string { return rep.orig.Get(name) }

// Options tune ParseWith.
type Options struct {
	Keys        trace.Keys // secrets for the trace header
	TraceHeader string     // the trace header's name; trace.HeaderName when empty
}

// Parse reads one report with the default trace header name.
func Parse(r io.Reader, k trace.Keys) (*Report, error) {
	return ParseWith(r, Options{Keys: k})
}

// ParseWith reads one report. It returns ErrTooLarge for input over
// MaxSize and ErrNotReport for mail that is neither ARF nor JMRP.
func ParseWith(r io.Reader, o Options) (*Report, error) {
	raw, err := mailmsg.ReadLimited(r, MaxSize)
	if errors.Is(err, mailmsg.ErrTooLarge) {
		return nil, ErrTooLarge
	}
	if err != nil {
		return nil, err
	}
	root := mailmsg.Parse(raw)
	rep := &Report{}
	var orig *mailmsg.Part // the returned original message or header block
	var c candidates
	if fields, container := feedbackFields(root); fields != nil {
		rep.Format = FormatARF
		rep.readFields(fields, &c)
		orig = originalOf(container, root)
	} else if isJMRP(root) {
		rep.Format = FormatJMRP
		rep.FeedbackType = "abuse"
		orig = originalOf(root, root)
		rep.SourceIP = ipIn(mailmsg.DecodeWords(root.Header.Get("Subject")))
	} else {
		return nil, ErrNotReport
	}
	if orig != nil {
		h := orig.Header
		rep.orig = h
		rep.OriginalMessageID = mailmsg.MessageID(h.Get("Message-ID"))
		rep.XJob = strings.TrimSpace(h.Get("X-Job"))
		c.hmxmr = mailmsg.CleanAddress(h.Get("X-HmXmrOriginalRecipient"))
		if to := h.Values("To"); len(to) == 1 {
			if list := mailmsg.AddressList(to[0]); len(list) == 1 {
				c.to = list[0]
			}
		}
		if rep.Format == FormatJMRP && rep.ArrivalDate.IsZero() {
			rep.ArrivalDate = mailmsg.ParseDate(h.Get("X-OriginalArrivalTime"))
		}
	}
	rep.Trace, rep.TraceForged = findref.Find(orig, root, o.TraceHeader, o.Keys)
	rep.attribute(&c)
	return rep, nil
}

// candidates are the addresses a report offers, before attribution.
type candidates struct {
	removal  []string
	hmxmr    string
	to       string
	redacted bool
}

// attribute picks the recipient, in the order documented on Report.
func (rep *Report) attribute(c *candidates) {
	switch {
	case rep.Trace != nil && rep.Trace.Rcpt != "":
		rep.Recipients, rep.RecipientSource = []string{rep.Trace.Rcpt}, FromTrace
	case rep.TraceForged:
		return // issue 6: a report whose trace header fails authentication is not acted on
	case len(rep.OriginalRcptTo) > 0:
		rep.Recipients, rep.RecipientSource = slices.Clone(rep.OriginalRcptTo), FromOriginalRcptTo
	case len(c.removal) > 0:
		rep.Recipients, rep.RecipientSource = c.removal, FromRemovalRecipient
	case c.hmxmr != "":
		rep.Recipients, rep.RecipientSource = []string{c.hmxmr}, FromHmXmr
	case c.to != "":
		rep.Recipients, rep.RecipientSource = []string{c.to}, FromOriginalTo
	}
	if len(rep.Recipients) > 0 {
		rep.Recipient = rep.Recipients[0]
		rep.Redacted = c.redacted && rep.RecipientSource != FromTrace
	}
}

// maxListed caps repeated fields kept from one report.
const maxListed = 100

// readFields fills rep from the machine-readable part (RFC 5965 §3).
func (rep *Report) readFields(h mailmsg.Header, c *candidates) {
	for _, f := range h {
		v := strings.TrimSpace(f.Value)
		switch strings.ToLower(f.Name) {
		case "feedback-type":
			rep.FeedbackType = strings.ToLower(mailmsg.FirstToken(v))
		case "user-agent":
			rep.UserAgent = v
		case "version":
			rep.Version = v
		case "original-mail-from":
			rep.OriginalMailFrom = mailmsg.CleanAddress(v)
		case "original-rcpt-to":
			if a := mailmsg.CleanAddress(v); a != "" && len(rep.OriginalRcptTo) < maxListed {
				rep.OriginalRcptTo = append(rep.OriginalRcptTo, a)
			}
		case "removal-recipient":
			if a := mailmsg.CleanAddress(v); a != "" && len(c.removal) < maxListed {
				c.removal = append(c.removal, a)
			}
		case "arrival-date", "received-date": // Received-Date: early drafts
			if rep.ArrivalDate.IsZero() {
				rep.ArrivalDate = mailmsg.ParseDate(v)
			}
		case "reporting-mta":
			rep.ReportingMTA = mailmsg.TypedName(v)
		case "source-ip":
			rep.SourceIP = mailmsg.FirstToken(v)
		case "reported-domain":
			if v != "" && len(rep.ReportedDomain) < maxListed {
				rep.ReportedDomain = append(rep.ReportedDomain, v)
			}
		case "incidents":
			rep.Incidents, _ = strconv.Atoi(mailmsg.FirstToken(v))
		case "auth-failure":
			rep.AuthFailure = strings.ToLower(mailmsg.FirstToken(v))
		case "redacted-address":
			c.redacted = true
		}
	}
}

// feedbackFields finds the machine-readable part: a message/feedback-report
// anywhere in the message or, failing that, a text part whose lines include
// a Feedback-Type field. It returns the parsed fields and the multipart that
// holds the part (the root for a single-part message).
func feedbackFields(root *mailmsg.Part) (mailmsg.Header, *mailmsg.Part) {
	var fb, container *mailmsg.Part
	var visit func(p, parent *mailmsg.Part, text bool)
	visit = func(p, parent *mailmsg.Part, text bool) {
		if fb != nil {
			return
		}
		if text && p.IsText() && hasFeedbackType(p.Body) || !text && p.MediaType == "message/feedback-report" {
			fb, container = p, parent
			return
		}
		for _, c := range p.Parts {
			visit(c, p, text)
		}
		if p.Message != nil && !text {
			visit(p.Message, p.Message, text)
		}
	}
	visit(root, root, false)
	if fb == nil {
		visit(root, root, true)
	}
	if fb == nil {
		return nil, nil
	}
	body := fb.Body
	if i := feedbackTypeAt(body); i > 0 {
		body = body[i:] // text before the fields (or leading blank lines)
	}
	h, _ := mailmsg.SplitHeader(trimBlankLines(body))
	if h == nil {
		h = mailmsg.Header{}
	}
	return h, container
}

var feedbackTypeRE = regexp.MustCompile(`(?im)^feedback-type[ \t]*:`)

func hasFeedbackType(b []byte) bool { return feedbackTypeRE.Match(b) }

// feedbackTypeAt returns the offset of the first line that starts a block of
// fields ending in Feedback-Type, for a text part where the fields follow
// prose; -1 when there is none.
func feedbackTypeAt(b []byte) int {
	loc := feedbackTypeRE.FindIndex(b)
	if loc == nil {
		return -1
	}
	start := loc[0]
	for start > 0 { // back up over the field lines just above it
		prev := bytes.LastIndexByte(b[:start-1], '\n') + 1
		line := string(b[prev : start-1])
		if strings.TrimSpace(line) == "" || !strings.Contains(line, ":") && line[0] != ' ' && line[0] != '\t' {
			break
		}
		start = prev
	}
	return start
}

func trimBlankLines(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\n' || b[0] == ' ' || b[0] == '\t') {
		i := 0
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		if i < len(b) && b[i] != '\n' {
			break
		}
		b = b[min(i+1, len(b)):]
	}
	return b
}

// originalOf returns the first embedded message or header block under
// container (RFC 5965 §2 (c)), else the first anywhere; nil if none.
func originalOf(container, root *mailmsg.Part) *mailmsg.Part {
	for _, p := range container.Parts {
		if p.Message != nil {
			return p.Message
		}
	}
	var found *mailmsg.Part
	root.Walk(func(p *mailmsg.Part) bool {
		if found == nil && p.Message != nil {
			found = p.Message
		}
		return found == nil
	})
	return found
}

var jmrpSubject = regexp.MustCompile(`(?i)^\s*complaint about message from\b`)

// isJMRP recognises Microsoft's Junk Mail Reporting Program format (DOMAIN.md
// §5): multipart/mixed from staff@hotmail.com, Subject "complaint about
// message from <IP>", the original attached with X-HmXmrOriginalRecipient.
func isJMRP(root *mailmsg.Part) bool {
	from := mailmsg.AddressList(root.Header.Get("From"))
	if len(from) == 1 && strings.EqualFold(from[0], "staff@hotmail.com") {
		return true
	}
	if jmrpSubject.MatchString(root.Header.Get("Subject")) {
		return true
	}
	found := false
	root.Walk(func(p *mailmsg.Part) bool {
		if p.Message != nil && p.Message.Header.Has("X-HmXmrOriginalRecipient") {
			found = true
		}
		return !found
	})
	return found
}

var ipRE = regexp.MustCompile(`[0-9A-Fa-f:.]{3,45}`)

// ipIn returns the last IP address in s, or "".
func ipIn(s string) string {
	ips := ipRE.FindAllString(s, 8)
	for i := len(ips) - 1; i >= 0; i-- {
		if a, err := netip.ParseAddr(strings.Trim(ips[i], ".:")); err == nil {
			return a.String()
		}
	}
	return ""
}
