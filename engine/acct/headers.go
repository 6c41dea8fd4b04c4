package acct

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Operator-chosen header_* columns ([acct] header-fields; PowerMTA's
// <acct-file> "records" with header fields). Each configured field name N
// becomes the column header_N, placed right after vmtaPool in the canonical
// order, and holds the value of the message's first N field. The values
// come from Record.Headers, which producers fill with HeaderValues.

// HeaderPrefix starts the name of every header column: header_Subject.
const HeaderPrefix = "header_"

// MaxHeaderValue bounds a header column's value, in bytes; a longer value
// is cut at a character boundary. RFC 5322 §2.1.1 limits a line to 998
// characters, so only folded values ever come near it.
const MaxHeaderValue = 998

// ValidFieldName reports whether name is an RFC 5322 §3.6.8 field name:
// one or more printable US-ASCII characters other than the colon.
func ValidFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// HeaderValues reads the header section at the start of msg, up to the
// first empty line (RFC 5322 §2.1), and returns the value of the first
// occurrence of each field in names that the message has, keyed by the
// name as given in names. Field names match case-insensitively (RFC 5322
// §1.2.2). A value is unfolded (the line breaks of folding removed, RFC
// 5322 §2.2.3), trimmed of surrounding white space and cut at
// MaxHeaderValue; encoded words (RFC 2047) are left as they are. Lines may
// end in CRLF or LF. It returns nil when names is empty or no field is
// found, and stops reading once every name is found.
func HeaderValues(msg []byte, names []string) map[string]string {
	if len(names) == 0 {
		return nil
	}
	var out map[string]string
	for off := 0; off < len(msg); {
		line, next := nextLine(msg, off)
		off = next
		if len(line) == 0 {
			break // the empty line that ends the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // a continuation of a field we do not want
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue // not a field (e.g. a stray "From " line): skip it
		}
		name := bytes.TrimRight(line[:colon], " \t") // RFC 5322 §4.5.2 obs-optional
		key := ""
		for _, n := range names {
			if len(n) == len(name) && strings.EqualFold(n, string(name)) {
				key = n
				break
			}
		}
		if key == "" {
			continue
		}
		if _, seen := out[key]; seen {
			continue // first occurrence wins
		}
		var v []byte
		v = append(v, line[colon+1:]...)
		for off < len(msg) && (msg[off] == ' ' || msg[off] == '\t') {
			var cont []byte
			cont, off = nextLine(msg, off)
			if len(v) <= MaxHeaderValue {
				v = append(v, cont...) // unfold: the line break goes, the white space stays
			}
		}
		if out == nil {
			out = make(map[string]string, len(names))
		}
		out[key] = clip(string(bytes.TrimSpace(v)))
		if len(out) == len(names) {
			break
		}
	}
	return out
}

// nextLine returns the line of msg starting at off without its line break,
// and the offset of the line after it.
func nextLine(msg []byte, off int) (line []byte, next int) {
	end := bytes.IndexByte(msg[off:], '\n')
	if end < 0 {
		return bytes.TrimSuffix(msg[off:], []byte("\r")), len(msg)
	}
	return bytes.TrimSuffix(msg[off:off+end], []byte("\r")), off + end + 1
}

// clip cuts s to MaxHeaderValue bytes at a character boundary.
func clip(s string) string {
	if len(s) <= MaxHeaderValue {
		return s
	}
	i := MaxHeaderValue
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// header returns r's value for the configured field name: the entry of
// Headers under name itself, else under any case of it.
func (r *Record) header(name string) string {
	if r.Headers == nil {
		return ""
	}
	if v, ok := r.Headers[name]; ok {
		return v
	}
	for k, v := range r.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// headerRow returns the column names with a header_N column for each of
// names after vmtaPool.
func headerRow(names []string) []string {
	cols := make([]string, 0, numFields+len(names))
	cols = append(cols, fields[:vmtaPoolCol+1]...)
	for _, n := range names {
		cols = append(cols, HeaderPrefix+n)
	}
	return append(cols, fields[vmtaPoolCol+1:]...)
}

// vmtaPoolCol is the index of vmtaPool in fields: the header_* columns
// follow it.
var vmtaPoolCol = func() int {
	for i, f := range fields {
		if f == "vmtaPool" {
			return i
		}
	}
	panic("acct: no vmtaPool column")
}()
