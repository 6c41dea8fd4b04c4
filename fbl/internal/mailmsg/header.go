package mailmsg

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"
)

// Field is one header field. Value is unfolded (RFC 5322 §2.2.3) and
// trimmed; encoded words are left as they are.
type Field struct {
	Name  string
	Value string
}

// Header is a header block in its original order.
type Header []Field

// Get returns the value of the first field called name (any case), or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Has reports whether a field called name (any case) is present.
func (h Header) Has(name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// Values returns the values of every field called name (any case).
func (h Header) Values(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// SplitHeader reads the header block at the start of b (LF line endings)
// and returns it with the body that follows the blank line. Reading is
// lenient: a first line that is not a field means there is no header at all;
// a later line that is neither a field nor a continuation ends the header
// and starts the body. Fields beyond MaxFields are dropped, and values are
// cut at MaxFieldLen.
func SplitHeader(b []byte) (Header, []byte) {
	var h Header
	dropped := false // the last field was dropped, so drop its continuations
	for off := 0; off < len(b); {
		end := bytes.IndexByte(b[off:], '\n')
		next := len(b)
		if end >= 0 {
			end += off
			next = end + 1
		} else {
			end = len(b)
		}
		line := b[off:end]
		switch {
		case len(bytes.TrimRight(line, " \t")) == 0:
			return h, b[next:]
		case line[0] == ' ' || line[0] == '\t':
			if len(h) == 0 && !dropped {
				return nil, b // continuation with nothing to continue: not a header
			}
			if !dropped && len(h[len(h)-1].Value) < MaxFieldLen {
				last := &h[len(h)-1]
				last.Value = strings.TrimSpace(last.Value + " " + strings.TrimSpace(string(line)))
			}
		default:
			name, value, ok := fieldLine(string(line))
			if !ok {
				if len(h) == 0 {
					return nil, b
				}
				return h, b[off:]
			}
			dropped = len(h) >= MaxFields
			if !dropped {
				if len(value) > MaxFieldLen {
					value = value[:MaxFieldLen]
				}
				h = append(h, Field{Name: name, Value: value})
			}
		}
		off = next
	}
	return h, nil
}

// fieldLine splits "Name: value". The name is printable ASCII without
// spaces or colons (RFC 5322 §3.6.8); white space before the colon is
// tolerated.
func fieldLine(line string) (name, value string, ok bool) {
	i := strings.IndexByte(line, ':')
	if i <= 0 {
		return "", "", false
	}
	name = strings.TrimRight(line[:i], " \t")
	if name == "" || len(name) > 128 {
		return "", "", false
	}
	for j := 0; j < len(name); j++ {
		if c := name[j]; c <= ' ' || c >= 0x7f {
			return "", "", false
		}
	}
	return name, strings.TrimSpace(line[i+1:]), true
}

// ParseContentType splits a Content-Type value into a lower-case media type
// and parameters. It is lenient where mime.ParseMediaType is strict: stray
// semicolons, unquoted values with special characters, odd case. A missing
// or unusable type gives def (RFC 2045 §5.2).
func ParseContentType(v, def string) (string, map[string]string) {
	params := map[string]string{}
	segs := splitParams(v)
	mt := ""
	if len(segs) > 0 {
		mt = strings.ToLower(strings.TrimSpace(segs[0]))
		segs = segs[1:]
	}
	if i := strings.IndexAny(mt, " \t("); i >= 0 {
		mt = mt[:i]
	}
	if t, s, ok := strings.Cut(mt, "/"); !ok || t == "" || s == "" {
		mt = def
	}
	for _, s := range segs {
		k, val, ok := strings.Cut(s, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' {
			if j := strings.IndexByte(val[1:], '"'); j >= 0 {
				val = val[1 : j+1]
			} else {
				val = val[1:]
			}
		}
		if k != "" && len(params) < 32 {
			if _, dup := params[k]; !dup {
				params[k] = val
			}
		}
	}
	return mt, params
}

// splitParams cuts at semicolons outside double quotes.
func splitParams(v string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			inQuote = !inQuote
		case ';':
			if !inQuote {
				out = append(out, v[start:i])
				start = i + 1
			}
		}
	}
	return append(out, v[start:])
}

var wordDecoder = mime.WordDecoder{
	CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
		return nil, errors.New("unsupported charset " + charset) // the caller keeps the raw text
	},
}

// DecodeWords decodes RFC 2047 encoded words in a header value. Words in a
// charset other than UTF-8, US-ASCII and ISO-8859-1 stay encoded.
func DecodeWords(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// dateLayouts are tried after net/mail's RFC 5322 §3.3 parser: ISO forms and
// the non-standard ones seen in reports.
var dateLayouts = []string{
	time.RFC3339,
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
	"2006-01-02 15-04-05",
	"02 Jan 2006 15:04:05.0000",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05",
	"2 Jan 2006 15:04:05",
}

// ParseDate reads a date field leniently; the zero time means it could not.
// A trailing comment such as "(UTC)" or "FILETIME=[...]" is ignored.
func ParseDate(v string) time.Time {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 128 {
		return time.Time{}
	}
	if t, err := mail.ParseDate(v); err == nil {
		return fixObsZone(t)
	}
	for _, cut := range []string{" (", " FILETIME="} {
		if i := strings.Index(v, cut); i > 0 {
			v = strings.TrimSpace(v[:i])
		}
	}
	if t, err := mail.ParseDate(v); err == nil {
		return fixObsZone(t)
	}
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return fixObsZone(t)
		}
	}
	return time.Time{}
}
