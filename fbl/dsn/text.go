package dsn

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/fbl/internal/mailmsg"
)

// Heuristics for bounces without RFC 3464 fields. They read the human text
// (cut where the returned copy of the message starts) for the lines that
// name failed recipients, in the three shapes real MTAs use:
//
//   - "<addr>: reason" or "<addr>" at the start of a line (Postfix, qmail,
//     Yahoo, Sendmail);
//   - a bare address at the start of a line after an introduction such as
//     "The following address(es) failed:" (Exim), "Delivery to the following
//     recipient failed permanently:" (old Gmail), "did not reach the
//     following recipient(s):" (Exchange), "list of recipients:" (OpenSMTPD);
//   - a labelled line, "Recipient address: addr" (Sun/Oracle Messaging
//     Server), "target mail address: addr".
//
// The lines after a recipient up to a blank line are its diagnostic; the
// enhanced status (RFC 3463) and the reply code are read from it, or, when
// it has neither, from the whole text. X-Failed-Recipients (Exim, Gmail)
// adds the recipients the text does not name.

// copyMarker matches the line that starts the returned copy of the message.
var copyMarker = regexp.MustCompile(`(?im)^[ \t>-]*(?:below this line is a copy of the message|this is a copy of the message|original message(?: headers)?:?[ \t-]*$|below is a copy of the original message|bounced e-?mail:|(?:returned|undelivered|original) message follows|the headers? (?:and .{0,40})?of (?:the|your) (?:original )?message follows?)`)

// splitCopy cuts text at the returned copy: human is what comes before,
// copied what comes after the marker line ("" when there is none).
func splitCopy(text string) (human, copied string) {
	loc := copyMarker.FindStringIndex(text)
	if loc == nil {
		return text, ""
	}
	copied = text[loc[1]:]
	if i := strings.IndexByte(copied, '\n'); i >= 0 {
		copied = copied[i+1:]
	} else {
		copied = ""
	}
	return text[:loc[0]], strings.TrimLeft(copied, " \t\n")
}

var (
	introRE = regexp.MustCompile(`(?i)following (?:e-?mail )?(?:address|recipient)|recipients? (?:or|and) (?:groups|distribution lists)|list of recipients|not yet been delivered|could not be delivered to|unable to deliver (?:your message )?to|(?:delivery|message) (?:has )?failed to|did not reach the following|permanent fatal errors|had (?:delivery problems|transient non-fatal errors)|address(?:es|\(es\))? failed|failed recipients?:|(?:was|were) not delivered to|(?:undeliverable|not (?:be )?delivered) to the following|cannot be reached`)
	labelRE = regexp.MustCompile(`(?i)^(?:(?:failed|final|original|intended|invalid|target|bounced?)[ -])?(?:mail |e-?mail )?(?:recipient(?:\(s\)|s)?(?: address)?|address(?:es)?)[ \t]*:[ \t]*(\S+)`)
	// statusRE finds an RFC 3463 status code that is not part of a longer
	// dotted number (an IP address, a version).
	statusRE = regexp.MustCompile(`(?:^|[^0-9.])([245]\.[0-9]{1,3}\.[0-9]{1,3})(?:$|[^0-9.]|\.(?:$|[^0-9]))`)
	codeRE   = regexp.MustCompile(`(?:^|[\s:'"(\[#])([245][0-9][0-9])(?:[ -]|$)`)
	// Wording that tells a final failure from a delay warning.
	permanentRE = regexp.MustCompile(`(?i)permanent(?:ly)?(?: fatal)? (?:error|failure)|failed permanently|i've given up|gave up|will not (?:try|retry)`)
	delayRE     = regexp.MustCompile(`(?i)\bdelay(?:ed)?\b|not yet been delivered|will (?:be retried|continue (?:trying|to try)|keep trying|retry)|warning message only|temporary (?:failure|error|problem)|still being retried|delivery attempts will continue`)
)

// maxDiag caps the diagnostic text kept per recipient.
const maxDiag = 1000

// maxWording is how much of a bounce's text is searched for its general
// wording (delay or failure); it is always near the top.
const maxWording = 16 << 10

// prefix returns at most the first n bytes of s.
func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// maxContext caps the lines before a labelled recipient line taken as its
// diagnostic.
const maxContext = 5

type hit struct {
	addr   string
	detail []string
	size   int
}

// note adds a line to the diagnostic, up to about maxDiag bytes.
func (h *hit) note(line string) {
	if line != "" && h.size < maxDiag {
		h.detail = append(h.detail, line)
		h.size += len(line) + 1
	}
}

// heuristics reads a non-standard bounce. human is the report's text before
// the returned copy, full all of it.
func heuristics(human, full, subject string, failed []string, c *bounce.Classifier) ([]Recipient, string) {
	if sesBounce.MatchString(full) {
		return sesRecipients(full, c), FormatSES
	}
	hits := textHits(human)
	for _, a := range failed {
		if find(hits, a) == nil && len(hits) < maxRecipients {
			hits = append(hits, &hit{addr: a})
		}
	}
	if len(hits) == 0 {
		return nil, ""
	}
	action := bounce.ActionFailed
	head := subject + "\n" + prefix(human, maxWording)
	if !permanentRE.MatchString(head) && delayRE.MatchString(head) {
		action = bounce.ActionDelayed
	}
	flat := strings.Join(strings.Fields(prefix(human, 4*maxWording)), " ")
	gStatus, gCode := findStatus(flat), findCode(flat)
	out := make([]Recipient, 0, len(hits))
	for _, h := range hits {
		diag := strings.Join(strings.Fields(strings.Join(h.detail, " ")), " ")
		if len(diag) > maxDiag {
			diag = diag[:maxDiag]
		}
		status, code := findStatus(diag), findCode(diag)
		if status == "" && code == 0 {
			status, code = gStatus, gCode
		}
		r := Recipient{Final: h.addr, Action: action, Status: status, Code: code, Diagnostic: diag}
		r.Category = categorize(c, r.Action, code, status, diag)
		out = append(out, r)
	}
	return out, FormatText
}

// textHits finds the recipient lines of a text bounce.
func textHits(human string) []*hit {
	var hits []*hit
	var cur *hit
	inSection := false
	lines := strings.Split(human, "\n")
	para := 0 // index of the first line of the current paragraph
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if t == "" {
			cur, para = nil, i+1
			continue
		}
		if len(hits) >= maxRecipients {
			break
		}
		hasAt := strings.IndexByte(t, '@') >= 0
		if !hasAt && len(t) <= maxIntro && introRE.MatchString(t) {
			inSection, cur = true, nil
			continue
		}
		if a, rest, ok := recipientLine(t, inSection); ok {
			cur = add(&hits, a)
			cur.note(rest)
			continue
		}
		if m := labelMatch(t, hasAt); m != nil {
			if a := mailmsg.CleanAddress(m[1]); a != "" {
				cur = add(&hits, a)
				for _, l := range lines[max(para, i-maxContext):i] { // the paragraph's earlier lines explain it
					cur.note(strings.TrimSpace(l))
				}
				continue
			}
		}
		if cur != nil {
			cur.note(t)
		}
	}
	return hits
}

// maxIntro is the longest line taken for an introduction.
const maxIntro = 300

// labelMatch runs labelRE on lines that can match: those with an '@' after
// a colon.
func labelMatch(t string, hasAt bool) []string {
	if !hasAt || len(t) > maxIntro {
		return nil
	}
	if i := strings.IndexByte(t, ':'); i < 0 || strings.IndexByte(t[i:], '@') < 0 {
		return nil
	}
	return labelRE.FindStringSubmatch(t)
}

func add(hits *[]*hit, a string) *hit {
	if h := find(*hits, a); h != nil {
		return h
	}
	h := &hit{addr: a}
	*hits = append(*hits, h)
	return h
}

func find(hits []*hit, a string) *hit {
	for _, h := range hits {
		if strings.EqualFold(h.addr, a) {
			return h
		}
	}
	return nil
}

// recipientLine reads a line that starts with a recipient: "<addr>" with
// what follows starting with ':', '(', ',', ';' or '.', or, inside a
// section of failed addresses, a bare address as the first word.
func recipientLine(t string, inSection bool) (addr, rest string, ok bool) {
	if t[0] == '<' {
		j := strings.IndexByte(t, '>')
		if j < 0 {
			return "", "", false
		}
		a := mailmsg.CleanAddress(t[1:j])
		rest = strings.TrimSpace(t[j+1:])
		if a == "" || !inSection && rest != "" && strings.IndexByte(":(,;.", rest[0]) < 0 {
			return "", "", false
		}
		return a, strings.TrimLeft(rest, ":;, "), true
	}
	if !inSection {
		return "", "", false
	}
	word, rest, _ := strings.Cut(t, " ")
	if i := strings.Index(word, "<mailto:"); i > 0 { // Exchange: addr<mailto:addr>
		word = word[:i]
	}
	if j := strings.IndexAny(word, ":;,"); j > 0 {
		rest = strings.TrimSpace(word[j+1:] + " " + rest)
		word = word[:j]
	}
	if strings.ContainsAny(word, "<>") { // an address inside other text is not a recipient line
		return "", "", false
	}
	a := mailmsg.CleanAddress(word)
	if a == "" {
		return "", "", false
	}
	return a, strings.TrimSpace(rest), true
}

func findStatus(s string) string {
	if m := statusRE.FindStringSubmatch(s); m != nil {
		return statusOf(m[1])
	}
	return ""
}

func findCode(s string) int {
	if m := codeRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// Amazon SES bounce notifications (JSON sent through SNS to an e-mail
// subscription): the recipients are the bouncedRecipients objects.
var (
	sesBounce    = regexp.MustCompile(`"notificationType"\s*:\s*"Bounce"`)
	sesObject    = regexp.MustCompile(`\{[^{}]*"emailAddress"[^{}]*\}`)
	sesString    = regexp.MustCompile(`"(emailAddress|action|status|diagnosticCode)"\s*:\s*("(?:[^"\\\n]|\\.)*")`)
	sesTransient = regexp.MustCompile(`"bounceType"\s*:\s*"Transient"`)
)

// sesRecipients reads the bounced recipients of an SES notification. The
// JSON is often damaged in transit (folded lines, stray characters), so the
// objects are found one by one rather than by decoding the whole.
func sesRecipients(text string, c *bounce.Classifier) []Recipient {
	transient := sesTransient.MatchString(text)
	if i := strings.Index(text, `"bouncedRecipients"`); i >= 0 {
		text = text[i:]
		if j := strings.IndexByte(text, ']'); j >= 0 {
			text = text[:j]
		}
	}
	var out []Recipient
	for _, obj := range sesObject.FindAllString(text, maxRecipients) {
		f := map[string]string{}
		for _, m := range sesString.FindAllStringSubmatch(obj, -1) {
			var s string
			if json.Unmarshal([]byte(m[2]), &s) == nil {
				f[m[1]] = s
			}
		}
		r := Recipient{Final: mailmsg.CleanAddress(f["emailAddress"]), Action: strings.ToLower(f["action"]), Status: statusOf(f["status"])}
		if r.Final == "" {
			continue
		}
		diag := strings.Join(strings.Fields(f["diagnosticCode"]), " ")
		code, dstatus, dtext := bounce.ParseDiagnostic(diag)
		if r.Status == "" {
			r.Status = dstatus
		}
		if r.Action == "" {
			r.Action = bounce.ActionFailed
			if transient {
				r.Action = bounce.ActionDelayed
			}
		}
		r.Code, r.Diagnostic = code, diag
		r.Category = categorize(c, r.Action, code, r.Status, dtext)
		out = append(out, r)
	}
	return out
}
