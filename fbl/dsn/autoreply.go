package dsn

import (
	"html"
	"regexp"
	"strings"

	"github.com/sluice-mta/sluice/fbl/internal/mailmsg"
)

// autoSubject matches the subjects of vacation and out-of-office replies,
// at the start (after any "Re:") or, for the unambiguous phrases, anywhere.
var autoSubject = regexp.MustCompile(`(?i)^\s*(?:(?:re|aw|sv|fw|fwd)\s*:\s*)*(?:auto(?:matic|matische)?[ _-]?(?:reply|response|respons|answer|antwort|réponse|respuesta|risposta)|autoreply|autoresponder|out of (?:the )?office|ooo\b|on vacation|vacation|away\b|abwesen|absence|r[ée]ponse automatique|respuesta autom[aá]tica|risposta automatica|automatisch antwoord|fuera de la oficina|自動(?:応答|返信)|不在)|\b(?:out of (?:the )?office|auto-?reply|automatic reply|autoresponder|vacation (?:reply|message|notice))\b`)

// signals are the signs of an automatic response (RFC 3834) in a header.
type signals struct {
	header  bool // a field only auto-responders write
	subject bool // a vacation or out-of-office subject
	// weak: Auto-Submitted other than "no" (RFC 3834 §5) or Exchange's
	// X-Auto-Response-Suppress. Many MTAs put them on real bounces too, so
	// they count only when the message is not a bounce.
	weak bool
}

func autoReply(h mailmsg.Header) signals {
	var s signals
	s.header = present(h, "X-Autoreply") || present(h, "X-Autorespond") || present(h, "X-Autoresponder") ||
		strings.EqualFold(strings.TrimSpace(h.Get("Precedence")), "auto_reply") ||
		strings.EqualFold(strings.TrimSpace(h.Get("X-Apple-Action")), "vacation") ||
		strings.Contains(strings.ToLower(h.Get("X-POST-MessageClass")), "autoresponder") ||
		strings.Contains(strings.ToLower(h.Get("X-Mailer")), "vacation")
	s.subject = autoSubject.MatchString(mailmsg.DecodeWords(h.Get("Subject")))
	as := strings.ToLower(mailmsg.FirstToken(h.Get("Auto-Submitted")))
	s.weak = as != "" && as != "no" || h.Has("X-Auto-Response-Suppress")
	return s
}

// present reports whether field name is there with a value other than
// "no" or "false".
func present(h mailmsg.Header, name string) bool {
	if !h.Has(name) {
		return false
	}
	v := strings.ToLower(strings.TrimSpace(h.Get(name)))
	return v != "no" && v != "false" && v != "0"
}

var (
	bounceFrom    = regexp.MustCompile(`(?i)mailer[-_ ]?daemon|mail[-_ ]?daemon|postmaster|mail delivery (?:system|subsystem|service)|internet mail delivery|mail administrator|system administrator|\bbounces?@`)
	bounceSubject = regexp.MustCompile(`(?i)undeliver|returned mail|failure notice|delivery (?:status )?notification|delivery (?:has )?fail|mail delivery failed|non-?delivery|not (?:be )?delivered|could not be delivered|bounce|delivery (?:problem|error|report|warning)|mail failure|returned to sender|could not send|delayed mail|delivery delayed|message delayed|rejected|delivery failure`)
	bounceBody    = regexp.MustCompile(`(?i)qmail-send program|created automatically by mail delivery software|this is the mail system at host|delivery has failed to these recipients|did not reach the following recipient|delivery to the following recipients? (?:failed|has been delayed)|could ?n[o']t be delivered|unable to deliver|"notificationtype"\s*:\s*"bounce"|message not delivered|undeliverable|permanent (?:fatal )?error|following address(?:es|\(es\))? (?:failed|had)|not yet been delivered|error has occurred while attempting to deliver`)
)

// bounceSender reports whether the sender or the subject presents the
// message as a delivery failure notice.
func bounceSender(h mailmsg.Header, from, subject string) bool {
	return bounceFrom.MatchString(h.Get("From")) || bounceFrom.MatchString(from) || bounceSubject.MatchString(subject)
}

// looksLikeBounce reports whether a message without RFC 3464 fields is a
// delivery failure notice by its sender, subject or wording.
func looksLikeBounce(h mailmsg.Header, from, subject, text string) bool {
	return bounceSender(h, from, subject) || bounceBody.MatchString(prefix(text, 4*maxWording))
}

var (
	htmlDrop  = regexp.MustCompile(`(?is)<(?:style|script|head)\b.*?</(?:style|script|head)\s*>`)
	htmlBreak = regexp.MustCompile(`(?i)<(?:br|/p|/div|/tr|/li|/h[1-6]|/pre|p|div|tr|li|pre)\b[^>]*>`)
	htmlTag   = regexp.MustCompile(`<[^>]*>`)
)

// htmlText turns an HTML part into plain text for the heuristics.
func htmlText(b []byte) string {
	if len(b) > maxText {
		b = b[:maxText]
	}
	s := htmlDrop.ReplaceAllString(string(b), "")
	s = htmlBreak.ReplaceAllString(s, "\n")
	s = htmlTag.ReplaceAllString(s, "")
	return html.UnescapeString(s)
}
