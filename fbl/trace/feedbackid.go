package trace

import "strings"

// maxFeedbackIDField caps each identifier so the header stays short.
const maxFeedbackIDField = 64

// FeedbackID returns the value of Gmail's Feedback-ID header,
// "a:b:c:SenderId": Gmail's Postmaster Tools aggregate complaints by each
// identifier, and the last one, the sender id, is mandatory and should not
// change. Here the job and the source are the optional identifiers and
// sender the sender id: "job:source:sender".
//
// Each part is sanitised: a colon, white space, a control or a non-ASCII byte
// becomes '-', and it is cut to 64 bytes. Empty optional parts are left out,
// so "" and "src" give "src:sender". It returns "" when sender is empty after
// sanitising: the header must then not be added.
func FeedbackID(job, source, sender string) string {
	sender = sanitizeFeedbackID(sender)
	if sender == "" {
		return ""
	}
	parts := make([]string, 0, 3)
	for _, p := range []string{job, source} {
		if p = sanitizeFeedbackID(p); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(append(parts, sender), ":")
}

func sanitizeFeedbackID(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxFeedbackIDField {
		s = s[:maxFeedbackIDField]
	}
	b := []byte(s)
	for i, c := range b {
		if c == ':' || c <= ' ' || c >= 0x7f {
			b[i] = '-'
		}
	}
	return string(b)
}
