package bounce

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/sluice-mta/sluice/engine/crlf"
)

// ErrNullSender is returned by DSN.Bytes when the message had the null
// reverse-path: a DSN is never sent to "<>" (RFC 3464 §2, RFC 5321 §4.5.5),
// which is what keeps bounces from looping.
var ErrNullSender = errors.New("bounce: no DSN for a message with the null sender")

// Actions of RFC 3464 §2.3.3.
const (
	ActionFailed    = "failed"
	ActionDelayed   = "delayed"
	ActionDelivered = "delivered"
	ActionRelayed   = "relayed"
	ActionExpanded  = "expanded"
)

// maxLine is the RFC 5322 §2.1.1 hard limit of a line, without CRLF; foldAt
// is the soft limit we fold header fields at.
const (
	maxLine = 998
	foldAt  = 76
)

// DSNRecipient is one per-recipient field group of RFC 3464 §2.3.
type DSNRecipient struct {
	Final          string    // Final-Recipient address (required), "a@b.test" or "type; value"
	Original       string    // Original-Recipient (the ORCPT, RFC 3461 §4.2), "" if none
	Action         string    // "failed" (default) or "delayed", or another RFC 3464 §2.3.3 action
	Status         string    // RFC 3463 "5.1.1"; "" means 5.0.0 for failed and 4.0.0 for delayed
	RemoteMTA      string    // the host that gave the reply, "" if none was reached
	Diagnostic     string    // "smtp; 550 5.1.1 ..." ("smtp; " is added before a bare reply, "X-Sluice; " before other text)
	LastAttempt    time.Time // Last-Attempt-Date, omitted when zero
	WillRetryUntil time.Time // Will-Retry-Until, written for delayed recipients only
}

// DSN is a delivery status notification about one message, to its envelope
// sender. Bytes renders it.
type DSN struct {
	ReportingMTA string         // our host name (Reporting-MTA, required)
	EnvID        string         // the ENVID of RFC 3461 §4.4, decoded; "" if none
	ArrivalDate  time.Time      // when we accepted the message; omitted when zero
	From         string         // header From address; "" means MAILER-DAEMON@ReportingMTA
	To           string         // the envelope sender; must not be empty
	Recipients   []DSNRecipient // at least one
	Original     []byte         // the original message, or nil to return nothing
	Ret          string         // "FULL" returns the whole message, anything else only its headers (RFC 3461 §4.3)
	Now          time.Time      // Date header; zero means time.Now()
	MessageID    string         // Message-ID, with or without <>; "" generates one
}

// Bytes renders the DSN as an RFC 6522 multipart/report with CRLF line
// endings: a human-readable part, the message/delivery-status part, and the
// original message (message/rfc822) or its header (text/rfc822-headers) when
// Original is set. It fails for the null sender (ErrNullSender), without
// recipients or Reporting-MTA, or with an unknown Action or malformed Status.
//
// Not done: SMTPUTF8 addresses would call for message/global-delivery-status
// (RFC 6533); they are written as rfc822 addresses here.
func (d *DSN) Bytes() ([]byte, error) {
	if strings.TrimSpace(d.To) == "" || strings.TrimSpace(d.To) == "<>" {
		return nil, ErrNullSender // RFC 3464 §2, RFC 5321 §4.5.5
	}
	if strings.ContainsAny(d.To, "\r\n") {
		return nil, fmt.Errorf("bounce: bad DSN recipient %q", d.To)
	}
	host := clean(d.ReportingMTA)
	if host == "" {
		return nil, errors.New("bounce: DSN needs a Reporting-MTA") // RFC 3464 §2.2.2
	}
	if len(d.Recipients) == 0 {
		return nil, errors.New("bounce: DSN without recipients")
	}
	rcpts := make([]DSNRecipient, len(d.Recipients))
	allDelayed := true
	for i, r := range d.Recipients {
		var err error
		if rcpts[i], err = checkRecipient(r); err != nil {
			return nil, err
		}
		allDelayed = allDelayed && rcpts[i].Action == ActionDelayed
	}
	now := d.Now
	if now.IsZero() {
		now = time.Now()
	}
	from := clean(d.From)
	if from == "" {
		from = "MAILER-DAEMON@" + host
	}
	msgID := strings.Trim(clean(d.MessageID), "<>")
	if msgID == "" {
		msgID = randomHex(16) + "@" + host
	}
	subject := "Delivery Status Notification (Failure)"
	if allDelayed {
		subject = "Delivery Status Notification (Delay)"
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	var hdr bytes.Buffer
	writeField(&hdr, "From", (&mail.Address{Name: "Mail Delivery System", Address: from}).String())
	writeField(&hdr, "To", (&mail.Address{Address: clean(strings.Trim(d.To, "<>"))}).String())
	writeField(&hdr, "Subject", subject)
	writeField(&hdr, "Date", now.Format(time.RFC1123Z)) // RFC 5322 §3.3
	writeField(&hdr, "Message-ID", "<"+msgID+">")
	writeField(&hdr, "Auto-Submitted", "auto-replied") // RFC 3834 §5
	writeField(&hdr, "MIME-Version", "1.0")
	writeField(&hdr, "Content-Type", mime.FormatMediaType("multipart/report", map[string]string{ // RFC 6522 §3
		"report-type": "delivery-status",
		"boundary":    mw.Boundary(),
	}))
	hdr.WriteString("\r\nThis is a MIME-formatted delivery status notification.\r\n\r\n")

	// Part 1: for people (RFC 6522 §3: the first part is human-readable).
	human := humanText(host, rcpts)
	p, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"text/plain; charset=utf-8"},
		"Content-Transfer-Encoding": {cte(human)},
	})
	if err != nil {
		return nil, err
	}
	p.Write(human)

	// Part 2: message/delivery-status (RFC 3464 §2).
	p, err = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"message/delivery-status"}})
	if err != nil {
		return nil, err
	}
	p.Write(statusFields(d, host, rcpts))

	// Part 3: the returned message or its header (RFC 6522 §3, RFC 3461 §4.3).
	if len(d.Original) > 0 {
		orig := toCRLF(d.Original)
		ct := "text/rfc822-headers" // RFC 6522 §4
		if strings.EqualFold(strings.TrimSpace(d.Ret), "FULL") {
			ct = "message/rfc822"
		} else {
			orig = headerSection(orig)
		}
		p, err = mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {ct},
			"Content-Transfer-Encoding": {cte(orig)}, // RFC 2046 §5.2.1: 7bit or 8bit only
		})
		if err != nil {
			return nil, err
		}
		p.Write(orig)
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	hdr.Write(body.Bytes())
	return hdr.Bytes(), nil
}

// checkRecipient validates r and fills in its defaults.
func checkRecipient(r DSNRecipient) (DSNRecipient, error) {
	r.Final = clean(r.Final)
	if r.Final == "" {
		return r, errors.New("bounce: DSN recipient without Final-Recipient") // RFC 3464 §2.3.2
	}
	r.Action = strings.ToLower(clean(r.Action))
	switch r.Action {
	case "":
		r.Action = ActionFailed
	case ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded:
	default:
		return r, fmt.Errorf("bounce: bad DSN action %q", r.Action)
	}
	r.Status = clean(r.Status)
	if r.Status == "" {
		switch r.Action {
		case ActionFailed:
			r.Status = "5.0.0"
		case ActionDelayed:
			r.Status = "4.0.0"
		default:
			r.Status = "2.0.0"
		}
	}
	if !validStatus(r.Status) {
		return r, fmt.Errorf("bounce: bad DSN status %q", r.Status) // RFC 3464 §2.3.4
	}
	r.Original, r.RemoteMTA, r.Diagnostic = clean(r.Original), clean(r.RemoteMTA), clean(r.Diagnostic)
	return r, nil
}

// validStatus checks an RFC 3463 status-code, "class.subject.detail".
func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// statusFields renders the message/delivery-status body: the per-message
// fields, then one blank-line-separated group per recipient (RFC 3464 §2.1).
func statusFields(d *DSN, host string, rcpts []DSNRecipient) []byte {
	var b bytes.Buffer
	writeField(&b, "Reporting-MTA", "dns; "+host) // RFC 3464 §2.2.2
	if env := clean(d.EnvID); env != "" {
		writeField(&b, "Original-Envelope-Id", env) // §2.2.1
	}
	if !d.ArrivalDate.IsZero() {
		writeField(&b, "Arrival-Date", d.ArrivalDate.Format(time.RFC1123Z)) // §2.2.5
	}
	for _, r := range rcpts {
		b.WriteString("\r\n")
		writeField(&b, "Final-Recipient", typed("rfc822", r.Final)) // §2.3.2
		if r.Original != "" {
			writeField(&b, "Original-Recipient", typed("rfc822", r.Original)) // §2.3.1
		}
		writeField(&b, "Action", r.Action) // §2.3.3
		writeField(&b, "Status", r.Status) // §2.3.4
		if r.RemoteMTA != "" {
			writeField(&b, "Remote-MTA", typed("dns", r.RemoteMTA)) // §2.3.5
		}
		if r.Diagnostic != "" {
			writeField(&b, "Diagnostic-Code", diagnostic(r.Diagnostic)) // §2.3.6
		}
		if !r.LastAttempt.IsZero() {
			writeField(&b, "Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z)) // §2.3.7
		}
		if r.Action == ActionDelayed && !r.WillRetryUntil.IsZero() {
			writeField(&b, "Will-Retry-Until", r.WillRetryUntil.Format(time.RFC1123Z)) // §2.3.9: delayed only
		}
	}
	return b.Bytes()
}

// humanText writes the first, human-readable part.
func humanText(host string, rcpts []DSNRecipient) []byte {
	var b bytes.Buffer
	line := func(s string) { writeWrapped(&b, s, "") }
	line("This is the mail delivery system at " + host + ".")
	b.WriteString("\r\n")
	section := func(action, intro string) {
		first := true
		for _, r := range rcpts {
			if r.Action != action {
				continue
			}
			if first {
				writeWrapped(&b, intro, "")
				b.WriteString("\r\n")
				first = false
			}
			line("<" + r.Final + ">")
			if r.RemoteMTA != "" {
				writeWrapped(&b, "    Remote server: "+r.RemoteMTA, "        ")
			}
			reason := r.Status
			if r.Diagnostic != "" {
				_, reason, _ = strings.Cut(diagnostic(r.Diagnostic), ";")
			}
			writeWrapped(&b, "    Reason: "+strings.TrimSpace(reason), "        ")
			if action == ActionDelayed && !r.WillRetryUntil.IsZero() {
				line("    Will retry until: " + r.WillRetryUntil.Format(time.RFC1123Z))
			}
			b.WriteString("\r\n")
		}
	}
	section(ActionFailed, "Your message could not be delivered to the following recipients. This is a permanent error; the message will not be retried.")
	section(ActionDelayed, "Delivery to the following recipients has been delayed. This is only a warning: the system will keep trying, and you do not need to resend the message.")
	for _, a := range []string{ActionDelivered, ActionRelayed, ActionExpanded} {
		section(a, "Status of delivery to the following recipients: "+a+".")
	}
	b.WriteString("The technical report is attached.\r\n")
	return b.Bytes()
}

// typed returns v as "type; value" (RFC 3464 §2.1.2) unless it already
// carries a type.
func typed(typ, v string) string {
	if t, rest, ok := strings.Cut(v, ";"); ok && isDiagType(t) {
		return strings.TrimSpace(t) + "; " + strings.TrimSpace(rest)
	}
	return typ + "; " + v
}

// diagnostic returns the Diagnostic-Code value for d: as given when it has a
// type, "smtp; " before an SMTP reply ("550 ..."), and "X-Sluice; " before
// any other text, such as a connection failure (RFC 3464 §2.3.6: "smtp"
// names a reply from an SMTP server).
func diagnostic(d string) string {
	typ := "X-Sluice"
	if len(d) >= 3 && d[0] >= '2' && d[0] <= '5' && d[1] >= '0' && d[1] <= '9' && d[2] >= '0' && d[2] <= '9' &&
		(len(d) == 3 || d[3] == ' ' || d[3] == '-') {
		typ = "smtp"
	}
	return typed(typ, d)
}

// clean makes s safe as a header field value: control characters (CR and
// LF included, so no field can be injected) become spaces, runs of spaces
// collapse and the ends are trimmed.
func clean(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\t' || r < 0x20 || r == 0x7f
	}), " ")
}

// writeField writes "Name: value" folded at white space (RFC 5322 §2.2.3).
func writeField(b *bytes.Buffer, name, value string) {
	writeWrapped(b, name+": "+value, " ")
}

// writeWrapped writes s as lines of at most foldAt characters where white
// space allows, and never more than maxLine, each continuation line starting
// with indent. The line ends with CRLF.
func writeWrapped(b *bytes.Buffer, s, indent string) {
	lead := s[:len(s)-len(strings.TrimLeft(s, " "))]
	b.WriteString(lead)
	lineLen := len(lead)
	for i, w := range strings.Fields(s) {
		switch {
		case i == 0:
		case lineLen+1+len(w) > foldAt:
			b.WriteString("\r\n" + indent)
			lineLen = len(indent)
		default:
			b.WriteByte(' ')
			lineLen++
		}
		for lineLen+len(w) > maxLine { // a word too long for any line: break it
			n := maxLine - lineLen
			b.WriteString(w[:n])
			b.WriteString("\r\n" + indent)
			w, lineLen = w[n:], len(indent)
		}
		b.WriteString(w)
		lineLen += len(w)
	}
	b.WriteString("\r\n")
}

// toCRLF returns b with every line ending (LF, CR or CRLF) as CRLF, ending
// in CRLF; b itself is never changed.
func toCRLF(b []byte) []byte {
	out := crlf.Normalize(b)
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out[:len(out):len(out)], '\r', '\n') // a copy when out is b
	}
	return out
}

// headerSection returns the header of a CRLF message, without the blank line
// that ends it (the whole input if it has no body).
func headerSection(m []byte) []byte {
	if bytes.HasPrefix(m, []byte("\r\n")) {
		return nil
	}
	if i := bytes.Index(m, []byte("\r\n\r\n")); i >= 0 {
		return m[:i+2]
	}
	return m
}

// cte returns the Content-Transfer-Encoding for b: 7bit, or 8bit when b has
// bytes above 127.
func cte(b []byte) string {
	for _, c := range b {
		if c >= 0x80 {
			return "8bit"
		}
	}
	return "7bit"
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
