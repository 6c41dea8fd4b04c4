package dsn

import (
	"bytes"
	"strings"

	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/engine/reply"
	"github.com/sluice-mta/sluice/fbl/internal/mailmsg"
)

// recipientFields are the per-recipient fields of RFC 3464 §2.3 (and the
// X-Actual-Recipient of Sendmail). Any other field goes with the group it
// appears in.
var recipientFields = map[string]bool{
	"original-recipient": true, "final-recipient": true, "action": true,
	"status": true, "remote-mta": true, "diagnostic-code": true,
	"last-attempt-date": true, "final-log-id": true, "will-retry-until": true,
	"x-actual-recipient": true,
}

// statusGroups reads every message/delivery-status part (and the
// message/global-delivery-status of RFC 6533) outside returned messages.
func statusGroups(root *mailmsg.Part) (perMsg mailmsg.Header, groups []mailmsg.Header) {
	root.Walk(func(p *mailmsg.Part) bool {
		if p.Message != nil {
			return false
		}
		if p.MediaType == "message/delivery-status" || p.MediaType == "message/global-delivery-status" {
			m, g := fieldGroups(p.Body)
			if perMsg == nil {
				perMsg = m
			}
			groups = append(groups, g...)
		}
		return len(groups) < maxRecipients
	})
	return perMsg, groups
}

// fieldGroups splits delivery-status fields (RFC 3464 §2.1) into the
// per-message group and the per-recipient groups. Groups are normally
// separated by blank lines; a group also ends where a recipient field
// repeats, and the per-message fields end at the first recipient field,
// because real reports omit blank lines. Lines that are not fields are
// skipped, so the same reader serves DSN fields quoted in plain text.
func fieldGroups(b []byte) (perMsg mailmsg.Header, groups []mailmsg.Header) {
	var cur mailmsg.Header
	hasRcpt := false
	flush := func() {
		switch {
		case hasRcpt && hasAddressField(cur):
			if len(groups) < maxRecipients {
				groups = append(groups, cur)
			}
		case !hasRcpt && perMsg == nil && cur.Has("Reporting-MTA"):
			perMsg = cur
		}
		cur, hasRcpt = nil, false
	}
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		switch {
		case len(bytes.TrimSpace(line)) == 0:
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if len(cur) > 0 && len(cur[len(cur)-1].Value) < mailmsg.MaxFieldLen { // RFC 5322 §2.2.3 unfolding
				last := &cur[len(cur)-1]
				last.Value += " " + strings.TrimSpace(string(line))
			}
		default:
			name, value, ok := fieldOf(line)
			if !ok {
				continue
			}
			lname := strings.ToLower(name)
			if recipientFields[lname] {
				if !hasRcpt && len(cur) > 0 || hasRcpt && cur.Has(name) && lname != "x-actual-recipient" {
					flush()
				}
				hasRcpt = true
			}
			if len(cur) < mailmsg.MaxFields {
				cur = append(cur, mailmsg.Field{Name: name, Value: value})
			}
		}
	}
	flush()
	return perMsg, groups
}

func hasAddressField(h mailmsg.Header) bool {
	return h.Has("Final-Recipient") || h.Has("Original-Recipient")
}

// fieldOf splits "Name: value" where Name has no spaces.
func fieldOf(line []byte) (string, string, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 || i > 64 || bytes.ContainsAny(line[:i], " \t") {
		return "", "", false
	}
	return string(line[:i]), strings.TrimSpace(string(line[i+1:])), true
}

// recipientsFromGroups turns per-recipient groups into Recipients. failed
// is the X-Failed-Recipients list (Exim, Gmail), used when a
// Final-Recipient is not an address.
func recipientsFromGroups(groups []mailmsg.Header, failed []string, c *bounce.Classifier) []Recipient {
	var out []Recipient
	for i, g := range groups {
		r := Recipient{
			Final:     mailmsg.CleanAddress(g.Get("Final-Recipient")),
			Original:  mailmsg.CleanAddress(g.Get("Original-Recipient")),
			Action:    strings.ToLower(mailmsg.FirstToken(g.Get("Action"))),
			Status:    statusOf(g.Get("Status")),
			RemoteMTA: mailmsg.TypedName(g.Get("Remote-MTA")),
		}
		if r.Final == "" {
			switch {
			case r.Original != "":
				r.Final = r.Original
			case len(failed) == len(groups):
				r.Final = failed[i]
			default: // an address inside a pipe command or an odd type
				if a := mailmsg.FindAddresses(g.Get("Final-Recipient"), 1); len(a) == 1 {
					r.Final = a[0]
				}
			}
		}
		if r.Final == "" {
			continue
		}
		diag := strings.Join(strings.Fields(g.Get("Diagnostic-Code")), " ")
		code, dstatus, text := bounce.ParseDiagnostic(diag)
		if r.Status == "" {
			r.Status = dstatus
		}
		r.Code, r.Diagnostic = code, diag
		if r.Action == "" {
			r.Action = bounce.ActionFailed
			if strings.HasPrefix(r.Status, "4") {
				r.Action = bounce.ActionDelayed
			}
		}
		r.Category = categorize(c, r.Action, code, r.Status, text)
		out = append(out, r)
	}
	return out
}

// categorize classifies a failed or delayed recipient.
func categorize(c *bounce.Classifier, action string, code int, status, text string) string {
	switch action {
	case bounce.ActionDelivered, bounce.ActionRelayed, bounce.ActionExpanded:
		return ""
	}
	return c.Classify(code, status, text)
}

// statusOf returns the RFC 3463 status code at the start of a Status field
// ("5.0.0 (permanent failure)" gives "5.0.0"), or "".
func statusOf(v string) string {
	st, ok := reply.ParseStatus(mailmsg.FirstToken(v))
	if !ok {
		return ""
	}
	return st.String()
}
