package listener

import (
	"bytes"
	"strings"
)

// header is the message split into its header fields (each with its folded
// continuation lines, CRLFs kept) and the rest (the blank line and body).
type header struct {
	fields [][]byte
	rest   []byte
}

// splitHeader cuts raw at the end of the header section (RFC 5322 §2.1): the
// first empty line, or the first line that is neither a field nor a
// continuation.
func splitHeader(raw []byte) *header {
	h := &header{}
	i := 0
	for i < len(raw) {
		end := bytes.Index(raw[i:], []byte("\r\n"))
		var line []byte
		if end < 0 {
			line = raw[i:]
		} else {
			line = raw[i : i+end+2]
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case len(trimmed) == 0:
			h.rest = raw[i:]
			return h
		case (trimmed[0] == ' ' || trimmed[0] == '\t') && len(h.fields) > 0:
			last := len(h.fields) - 1
			h.fields[last] = append(h.fields[last], line...)
		case isFieldLine(trimmed):
			h.fields = append(h.fields, append([]byte(nil), line...))
		default:
			h.rest = raw[i:]
			return h
		}
		i += len(line)
	}
	return h
}

func isFieldLine(l []byte) bool {
	c := bytes.IndexByte(l, ':')
	if c <= 0 {
		return false
	}
	for _, b := range l[:c] { // RFC 5322 §3.6.8 ftext
		if b < 33 || b > 126 {
			return false
		}
	}
	return true
}

func fieldName(f []byte) string {
	c := bytes.IndexByte(f, ':')
	return string(f[:c])
}

func (h *header) has(name string) bool {
	for _, f := range h.fields {
		if strings.EqualFold(fieldName(f), name) {
			return true
		}
	}
	return false
}

// take removes every field called name and returns the first one's
// unfolded, trimmed value.
func (h *header) take(name string) (string, bool) {
	var val string
	found := false
	kept := h.fields[:0]
	for _, f := range h.fields {
		if strings.EqualFold(fieldName(f), name) {
			if !found {
				v := string(f[bytes.IndexByte(f, ':')+1:])
				v = unfold.Replace(v)
				val, found = strings.TrimSpace(v), true
			}
			continue
		}
		kept = append(kept, f)
	}
	h.fields = kept
	return val, found
}

// unfold removes the line breaks of a folded field (RFC 5322 §2.2.3), and
// any stray CR (found by FuzzHeader: checkBody refuses one first, but the
// value ends up in the acct CSV); built once, as a Replacer is costly to make.
var unfold = strings.NewReplacer("\r\n", "", "\n", "", "\r", "")

func (h *header) writeTo(b *bytes.Buffer) {
	for _, f := range h.fields {
		b.Write(f)
		if !bytes.HasSuffix(f, []byte("\r\n")) {
			b.WriteString("\r\n")
		}
	}
	b.Write(h.rest)
}
