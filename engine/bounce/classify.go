// Package bounce classifies delivery failures into PowerMTA's bounce
// categories and builds the delivery status notifications (RFC 3464 inside
// an RFC 6522 multipart/report) that tell a sender their mail failed.
// It holds no state beyond what its constructors return; a Classifier is
// immutable and safe for concurrent use.
package bounce

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/sluice-mta/sluice/engine/reply"
)

// The bounce categories, with PowerMTA's names (acct field bounceCat).
const (
	BadMailbox        = "bad-mailbox"
	BadDomain         = "bad-domain"
	InactiveMailbox   = "inactive-mailbox"
	QuotaIssues       = "quota-issues"
	SpamRelated       = "spam-related"
	PolicyRelated     = "policy-related"
	RoutingErrors     = "routing-errors"
	ProtocolErrors    = "protocol-errors"
	ContentRelated    = "content-related"
	MessageExpired    = "message-expired"
	NoAnswerFromHost  = "no-answer-from-host"
	RelayingIssues    = "relaying-issues"
	BadConnection     = "bad-connection"
	BadConfiguration  = "bad-configuration"
	InvalidSender     = "invalid-sender"
	VirusRelated      = "virus-related"
	Other             = "other"
	maxClassifyLength = 4096 // bytes of reply text looked at; bounds the matching work
)

// Categories returns every bounce category, in PowerMTA's documented order.
// The slice is new on each call.
func Categories() []string {
	return []string{
		BadMailbox, BadDomain, InactiveMailbox, QuotaIssues, SpamRelated,
		PolicyRelated, RoutingErrors, ProtocolErrors, ContentRelated,
		MessageExpired, NoAnswerFromHost, RelayingIssues, BadConnection,
		BadConfiguration, InvalidSender, VirusRelated, Other,
	}
}

// IsCategory reports whether s is one of the categories of Categories.
func IsCategory(s string) bool {
	for _, c := range Categories() {
		if c == s {
			return true
		}
	}
	return false
}

// Suppress reports whether a permanent failure in category cat usually means
// the recipient should be suppressed (bad-mailbox, bad-domain,
// inactive-mailbox).
func Suppress(cat string) bool {
	return cat == BadMailbox || cat == BadDomain || cat == InactiveMailbox
}

// Rule maps replies that match Pattern to Category.
type Rule struct {
	Pattern  *regexp.Regexp
	Category string
}

// Classifier assigns a bounce category to an SMTP reply. Rules are tried in
// order and the first match wins: the operator's rules, then the built-in
// text rules, then the RFC 3463 enhanced status code; anything left is
// "other".
type Classifier struct {
	extra []compiledRule
}

// NewClassifier returns a Classifier that tries extra before the built-in
// rules, in the order given. Operator patterns are matched against the whole
// reply as "550 5.1.1 text" (code and status omitted when unknown), so they
// may key on codes as well as text; write them with (?i) for case
// insensitivity. Rules with a nil Pattern are ignored. Categories are used as
// given; config validation should check them with IsCategory.
func NewClassifier(extra []Rule) *Classifier {
	return &Classifier{extra: compile(extra)}
}

// Classify returns the category of a reply with code (0 if none, e.g. a
// connection failure), enhanced status ("5.1.1", or "" if none) and reply
// text. When status is empty and text starts with an enhanced status, that
// one is used (RFC 2034 §3). Runs of white space, including the line breaks
// of multi-line replies, count as one space.
func (c *Classifier) Classify(code int, status string, text string) string {
	text = normalize(text)
	st, stOK := reply.ParseStatus(status)
	if !stOK && status == "" {
		if f, rest, _ := strings.Cut(text, " "); f != "" {
			if s, ok := reply.ParseStatus(f); ok {
				st, stOK, text = s, true, rest
			}
		}
	}
	if len(c.extra) > 0 {
		line := text
		if stOK {
			line = st.String() + " " + line
		}
		if code > 0 {
			line = strconv.Itoa(code) + " " + line
		}
		lower := lowerFold(line)
		for i := range c.extra {
			if c.extra[i].match(line, lower) {
				return c.extra[i].Category
			}
		}
	}
	lower := lowerFold(text)
	for i := range builtinText {
		if builtinText[i].match(lower, lower) {
			return builtinText[i].Category
		}
	}
	if stOK {
		return statusCategory(st)
	}
	return Other
}

// ClassifyDiagnostic classifies an RFC 3464 Diagnostic-Code value such as
// "smtp; 550 5.1.1 <a@b.test>: user unknown" (see ParseDiagnostic).
func (c *Classifier) ClassifyDiagnostic(diag string) string {
	code, status, text := ParseDiagnostic(diag)
	return c.Classify(code, status, text)
}

// ParseDiagnostic splits an RFC 3464 §2.3.6 Diagnostic-Code value,
// "diagnostic-type; text", into the SMTP reply code, enhanced status and
// text. The type is optional (some MTAs omit it); the code and status are
// taken only when the text starts with them ("550 5.1.1 ..." or the
// multi-line form "550-5.1.1 ..."). Missing parts come back as 0 or "".
func ParseDiagnostic(diag string) (code int, status, text string) {
	diag = normalize(diag)
	if t, rest, ok := strings.Cut(diag, ";"); ok && isDiagType(t) {
		diag = strings.TrimSpace(rest)
	}
	if len(diag) >= 4 && (diag[3] == ' ' || diag[3] == '-') {
		if n, err := strconv.Atoi(diag[:3]); err == nil && n >= 200 && n < 600 {
			code, diag = n, strings.TrimSpace(diag[4:])
		}
	}
	if f, rest, _ := strings.Cut(diag, " "); f != "" {
		if st, ok := reply.ParseStatus(f); ok && (code == 0 || st[0] == code/100) {
			status, diag = st.String(), rest
		}
	}
	return code, status, diag
}

// isDiagType reports whether s looks like a diagnostic-type atom ("smtp",
// "X-Postfix"): RFC 3464 §2.3.6, an atom with no spaces.
func isDiagType(s string) bool {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// normalize collapses white space to single spaces, trims, and caps the
// length so that matching work is bounded.
func normalize(s string) string {
	if len(s) > maxClassifyLength {
		s = s[:maxClassifyLength]
	}
	return strings.Join(strings.Fields(s), " ")
}
