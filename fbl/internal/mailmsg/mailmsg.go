// Package mailmsg reads an Internet message (RFC 5322) and its MIME tree
// (RFC 2045, RFC 2046) the way complaint reports and bounces need it read:
// tolerant of LF, CRLF or bare-CR line endings, an mbox "From " line,
// missing, mismatched or unterminated boundaries and broken transfer
// encodings. Parse never fails and never panics; what it cannot structure it
// keeps as text. Work is bounded by the part, depth and field caps below and
// is linear in the input, whose size the caller limits.
package mailmsg

import (
	"bytes"
	"strings"
)

// Caps on the structure Parse builds.
const (
	MaxParts  = 128 // entities per message, embedded messages included
	MaxDepth  = 12  // nesting of multiparts and embedded messages
	MaxFields = 512 // fields kept per header block; the rest are skipped
	// MaxFieldLen caps a field's unfolded value: continuation lines past it
	// are dropped, which keeps unfolding linear.
	MaxFieldLen = 16 << 10
)

// Part is one MIME entity: a whole message, a body part or an embedded
// message.
type Part struct {
	Header    Header
	MediaType string            // lower case, e.g. "text/plain"; defaulted per RFC 2045 §5.2
	Params    map[string]string // Content-Type parameters, keys in lower case
	// Body is the content with its transfer encoding undone. For a
	// multipart it is the preamble.
	Body []byte
	// Parts are the body parts of a multipart.
	Parts []*Part
	// Message is the parsed content of a message/rfc822 (or headers-only
	// text/rfc822-headers) part.
	Message *Part
	// Malformed is set on a part declared multipart whose body has no
	// delimiter lines at all: it is then kept whole as text/plain.
	Malformed bool
}

// Parse reads a whole message. Line endings are normalized to LF first.
func Parse(raw []byte) *Part {
	p := &parser{}
	return p.message(Normalize(raw), 0)
}

// Normalize turns CRLF and bare CR line endings into LF.
func Normalize(b []byte) []byte {
	if bytes.IndexByte(b, '\r') < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\r' {
			if i+1 < len(b) && b[i+1] == '\n' {
				continue // the LF follows
			}
			c = '\n'
		}
		out = append(out, c)
	}
	return out
}

// Walk calls fn for p and then, depth first, for its body parts and its
// embedded message, skipping the children of any part for which fn returns
// false.
func (p *Part) Walk(fn func(*Part) bool) {
	if p == nil || !fn(p) {
		return
	}
	for _, c := range p.Parts {
		c.Walk(fn)
	}
	p.Message.Walk(fn)
}

// IsText reports whether p holds readable text: text/plain (or a
// text/* other than HTML and the rfc822 header types), or a malformed
// multipart kept as text.
func (p *Part) IsText() bool {
	if p.Malformed {
		return true
	}
	return strings.HasPrefix(p.MediaType, "text/") && p.Message == nil && p.MediaType != "text/html"
}

// IsEmbedded reports whether p's content is a message or its header
// (message/rfc822, message/global, text/rfc822-headers and the like).
func IsEmbedded(mediaType string) bool {
	switch mediaType {
	case "message/rfc822", "message/global", "message/partial-rfc822",
		"text/rfc822-headers", "text/rfc822-header", "message/rfc822-headers",
		"message/global-headers", "text/rfc822":
		return true
	}
	return false
}

type parser struct {
	parts int
}

// message parses header and body of a message (or an embedded one).
func (p *parser) message(b []byte, depth int) *Part {
	b = stripMboxFrom(b)
	h, body := SplitHeader(b)
	return p.entity(h, body, depth, "text/plain")
}

func (p *parser) entity(h Header, body []byte, depth int, defType string) *Part {
	p.parts++
	part := &Part{Header: h}
	part.MediaType, part.Params = ParseContentType(h.Get("Content-Type"), defType)
	switch {
	case strings.HasPrefix(part.MediaType, "multipart/"):
		if depth >= MaxDepth || p.parts >= MaxParts {
			part.Body = body
			return part
		}
		pre, chunks, ok := splitMultipart(body, part.Params["boundary"])
		if !ok {
			part.MediaType, part.Malformed = "text/plain", true
			part.Body = decodeCTE(body, h.Get("Content-Transfer-Encoding"))
			return part
		}
		part.Body = pre
		childType := "text/plain"
		if part.MediaType == "multipart/digest" { // RFC 2046 §5.1.5
			childType = "message/rfc822"
		}
		for _, c := range chunks {
			if p.parts >= MaxParts {
				break
			}
			ch, cb := SplitHeader(c)
			part.Parts = append(part.Parts, p.entity(ch, cb, depth+1, childType))
		}
	case IsEmbedded(part.MediaType):
		part.Body = decodeCTE(body, h.Get("Content-Transfer-Encoding"))
		if depth < MaxDepth && p.parts < MaxParts {
			part.Message = p.message(part.Body, depth+1)
		}
	default:
		part.Body = decodeCTE(body, h.Get("Content-Transfer-Encoding"))
	}
	return part
}

// stripMboxFrom drops a leading mbox "From sender date" line and any blank
// lines before the header.
func stripMboxFrom(b []byte) []byte {
	for len(b) > 0 && b[0] == '\n' {
		b = b[1:]
	}
	if bytes.HasPrefix(b, []byte("From ")) {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[i+1:]
		}
		return nil
	}
	return b
}

// splitMultipart cuts body at the delimiter lines of boundary (RFC 2046
// §5.1.1). It tolerates white space around delimiters, a missing close
// delimiter (the last part runs to the end) and, when the declared boundary
// never occurs, a boundary that does occur in the body. ok is false when no
// delimiter line is found at all.
func splitMultipart(body []byte, boundary string) (preamble []byte, parts [][]byte, ok bool) {
	if boundary != "" {
		if preamble, parts, ok = split(body, boundary); ok {
			return preamble, parts, true
		}
	}
	if b := guessBoundary(body); b != "" && b != boundary {
		return split(body, b)
	}
	return nil, nil, false
}

func split(body []byte, boundary string) (preamble []byte, parts [][]byte, ok bool) {
	delim := "--" + boundary
	start := -1 // start of the current part's content
	for off := 0; off < len(body); {
		end := bytes.IndexByte(body[off:], '\n')
		next := len(body)
		if end >= 0 {
			end += off
			next = end + 1
		} else {
			end = len(body)
		}
		line := bytes.TrimSpace(body[off:end])
		if len(line) >= len(delim) && line[0] == '-' && string(line[:len(delim)]) == delim {
			rest := string(line[len(delim):])
			if rest == "" || rest == "--" {
				cut := max(off-1, 0) // the line break before a delimiter belongs to it
				if start < 0 {
					preamble = body[:cut]
				} else {
					parts = append(parts, body[start:max(cut, start)])
				}
				ok = true
				if rest == "--" {
					return preamble, parts, true
				}
				start = next
				if len(parts) >= MaxParts {
					return preamble, parts, true
				}
			}
		}
		off = next
	}
	if start >= 0 && start <= len(body) {
		parts = append(parts, body[start:])
	}
	return preamble, parts, ok
}

// guessBoundary finds a delimiter-looking line ("--" and then a token with
// something other than dashes) that occurs at least twice and whose first
// occurrence is followed by a header field or a blank line.
func guessBoundary(body []byte) string {
	type cand struct {
		n, first int
		ok       bool
	}
	seen := map[string]*cand{}
	var pending *cand // the candidate whose first occurrence was the previous line
	for off := 0; off < len(body); {
		end := bytes.IndexByte(body[off:], '\n')
		next := len(body)
		if end >= 0 {
			end += off
			next = end + 1
		} else {
			end = len(body)
		}
		raw := body[off:end]
		off = next
		if pending != nil {
			_, _, field := fieldLine(string(bytes.TrimRight(raw, " \t")))
			pending.ok = field || len(bytes.TrimSpace(raw)) == 0
			pending = nil
		}
		l := bytes.TrimSpace(raw)
		if len(l) < 4 || len(l) > 200 || l[0] != '-' || l[1] != '-' || bytes.Count(l, []byte("-")) == len(l) || bytes.ContainsAny(l, " \t") {
			continue
		}
		tok := bytes.TrimSuffix(l[2:], []byte("--"))
		c := seen[string(tok)] // no allocation for the lookup
		if c == nil {
			if len(seen) >= 256 {
				continue
			}
			c = &cand{first: len(seen), ok: next >= len(body)}
			seen[string(tok)] = c
			pending = c
		}
		c.n++
	}
	best, bestFirst := "", -1
	for tok, c := range seen {
		if c.n >= 2 && c.ok && (bestFirst < 0 || c.first < bestFirst) {
			best, bestFirst = tok, c.first
		}
	}
	return best
}
