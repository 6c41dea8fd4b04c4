package inject

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"mime"
	"net/mail"
	"path"
	"strings"
	"time"

	"github.com/sluice-mta/sluice/engine/crlf"
)

// maxLine is RFC 5321 §4.5.3.1.6 (and RFC 5322 §2.1.1): 998 octets before CRLF.
const maxLine = 998

// Meta is what the caller decides about one message.
type Meta struct {
	Received  string    // the trace field, complete with its CRLF, put first
	MessageID string    // without angle brackets
	Date      time.Time // the Date field (RFC 5322 §3.6.1)
}

// Rendered is one recipient's message.
type Rendered struct {
	Body     []byte
	Body8Bit bool // the message has octets above 127 (raw templates only)
}

// Buffers are the scratch space of one rendering goroutine. When Out is
// set, Render writes the message into it (reset first) instead of a new
// buffer, so that a caller can recycle message buffers.
type Buffers struct {
	Out               *bytes.Buffer
	small, text, html bytes.Buffer
}

func (b *Buffers) output(size int) *bytes.Buffer {
	out := b.Out
	if out == nil {
		out = new(bytes.Buffer)
	}
	out.Reset()
	out.Grow(size)
	return out
}

// Render builds the message for one recipient. The error explains why the
// recipient is refused (a missing value, an invalid rendered address).
func (t *Template) Render(data map[string]any, r *Recipient, meta Meta, bufs *Buffers) (Rendered, error) {
	if t.raw != nil {
		return t.renderRaw(data, r, meta, bufs)
	}
	// The bodies first, so that the message is allocated once.
	var parts []textPart
	if t.text != nil {
		if err := t.text.execute(&bufs.text, t.max, data); err != nil {
			return Rendered{}, err
		}
		parts = append(parts, newTextPart("text/plain", bufs.text.Bytes()))
	}
	if t.html != nil {
		if err := t.html.execute(&bufs.html, t.max, data); err != nil {
			return Rendered{}, err
		}
		parts = append(parts, newTextPart("text/html", bufs.html.Bytes()))
	}
	size := len(meta.Received) + 1024 + t.attachData
	for _, p := range parts {
		size += len(p.body) + 200
	}
	buf := &bufs.small
	out := bufs.output(size)
	out.WriteString(meta.Received)
	writeField(out, "Date", meta.Date.Format(time.RFC1123Z)) // RFC 5322 §3.3

	fa := t.fromFixed // a From without template fields is formatted once
	if fa == "" {
		from, err := execText(t.from, data, buf)
		if err != nil {
			return Rendered{}, err
		}
		if fa, err = formatAddressList(from); err != nil {
			return Rendered{}, fmt.Errorf("content.from: %w", err)
		}
	}
	writeField(out, "From", fa)
	to := (&mail.Address{Name: r.Name, Address: r.Email}).String()
	if t.to != nil {
		s, err := execText(t.to, data, buf)
		if err != nil {
			return Rendered{}, err
		}
		if to, err = formatAddressList(s); err != nil {
			return Rendered{}, fmt.Errorf("content.to: %w", err)
		}
	}
	writeField(out, "To", to)
	if t.replyTo != nil {
		s, err := execText(t.replyTo, data, buf)
		if err != nil {
			return Rendered{}, err
		}
		rt, err := formatAddressList(s)
		if err != nil {
			return Rendered{}, fmt.Errorf("content.reply_to: %w", err)
		}
		writeField(out, "Reply-To", rt)
	}
	subj, err := execText(t.subject, data, buf)
	if err != nil {
		return Rendered{}, err
	}
	writeField(out, "Subject", encodeWords(subj))
	writeField(out, "Message-ID", "<"+meta.MessageID+">")
	for _, h := range t.headers {
		v, err := execText(h.t, data, buf)
		if err != nil {
			return Rendered{}, err
		}
		writeField(out, h.name, encodeWords(v))
	}
	writeField(out, "MIME-Version", "1.0") // RFC 2045 §4
	if err := t.writeBody(out, parts); err != nil {
		return Rendered{}, err
	}
	return Rendered{Body: out.Bytes()}, nil
}

// writeBody writes the content fields and the body: one text part, or
// multipart/alternative with the plainest first (RFC 2046 §5.1.4), inside
// multipart/mixed when there are attachments (RFC 2046 §5.1.3).
func (t *Template) writeBody(out *bytes.Buffer, parts []textPart) error {
	if len(t.attachParts) == 0 {
		writeAlternative(out, parts)
		return nil
	}
	b := newBoundary()
	writeField(out, "Content-Type", `multipart/mixed; boundary="`+b+`"`)
	out.WriteString("\r\n--" + b + "\r\n")
	writeAlternative(out, parts) // the first part: the text, or an alternative of texts
	for _, a := range t.attachParts {
		out.WriteString("\r\n--" + b + "\r\n")
		out.Write(a)
	}
	out.WriteString("\r\n--" + b + "--\r\n")
	return nil
}

// newBoundary returns a multipart boundary (RFC 2046 §5.1.1) with 128
// random bits: it cannot plausibly occur in the parts. "=_" cannot start a
// quoted-printable line either.
func newBoundary() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return "=_" + base64.RawURLEncoding.EncodeToString(b[:])
}

type textPart struct {
	ctype, cte string
	body       []byte
}

// newTextPart encodes b with CRLF line ends: 7bit when it is ASCII with
// lines within RFC 5322 §2.1.1's 998, quoted-printable otherwise (RFC 2045
// §6.7). The part may share b's memory.
func newTextPart(ctype string, b []byte) textPart {
	b = crlf.Normalize(b)
	if isASCIIBytes(b) && maxLineLen(b) <= maxLine {
		return textPart{ctype: ctype + "; charset=utf-8", cte: "7bit", body: b}
	}
	return textPart{ctype: ctype + "; charset=utf-8", cte: "quoted-printable", body: appendQP(make([]byte, 0, len(b)+len(b)/4), b)}
}

// appendQP appends the quoted-printable encoding of b (CRLF line ends) to
// dst: RFC 2045 §6.7 rules 1-5, lines of at most 76 characters with soft
// breaks, white space before a line end encoded.
func appendQP(dst, b []byte) []byte {
	const hex = "0123456789ABCDEF"
	for len(b) > 0 {
		line := b
		next := []byte(nil)
		if i := bytes.Index(b, []byte("\r\n")); i >= 0 {
			line, next = b[:i], b[i+2:]
		}
		n := 0 // characters on the output line
		for i := 0; i < len(line); i++ {
			c := line[i]
			w := 1
			lit := c >= 33 && c <= 126 && c != '=' || (c == ' ' || c == '\t') && i < len(line)-1
			if !lit {
				w = 3
			}
			// Leave room for the soft break "=" (rule 5).
			if n+w > 75 && !(i == len(line)-1 && n+w <= 76) {
				dst = append(dst, '=', '\r', '\n')
				n = 0
			}
			if lit {
				dst = append(dst, c)
			} else {
				dst = append(dst, '=', hex[c>>4], hex[c&15])
			}
			n += w
		}
		b = next
		if next != nil {
			dst = append(dst, '\r', '\n')
		}
	}
	return dst
}

// writeAlternative writes one part's header and body, or a
// multipart/alternative of several.
func writeAlternative(out *bytes.Buffer, parts []textPart) {
	if len(parts) == 1 {
		p := parts[0]
		writeField(out, "Content-Type", p.ctype)
		writeField(out, "Content-Transfer-Encoding", p.cte)
		out.WriteString("\r\n")
		out.Write(p.body)
		return
	}
	b := newBoundary()
	writeField(out, "Content-Type", `multipart/alternative; boundary="`+b+`"`)
	out.WriteString("\r\n")
	for i, p := range parts {
		if i > 0 {
			out.WriteString("\r\n") // RFC 2046 §5.1.1: the CRLF before a delimiter is part of it
		}
		out.WriteString("--" + b + "\r\n")
		writeField(out, "Content-Type", p.ctype)
		writeField(out, "Content-Transfer-Encoding", p.cte)
		out.WriteString("\r\n")
		out.Write(p.body)
	}
	out.WriteString("\r\n--" + b + "--\r\n")
}

// attachmentPart encodes an attachment once per request: its header
// fields, a blank line and its base64 lines.
func attachmentPart(a Attachment) []byte {
	ct := a.ContentType
	if ct == "" {
		ct = mime.TypeByExtension(path.Ext(a.Filename))
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	var out bytes.Buffer
	out.Grow(len(a.Data)*4/3 + len(a.Data)/38 + 256)
	writeField(&out, "Content-Type", ct)
	writeField(&out, "Content-Transfer-Encoding", "base64")
	// RFC 2183; FormatMediaType applies RFC 2231 to a non-ASCII name.
	writeField(&out, "Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Filename}))
	out.WriteString("\r\n")
	enc := base64.StdEncoding.EncodeToString(a.Data)
	for len(enc) > 76 { // RFC 2045 §6.8: lines of at most 76 characters
		out.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc + "\r\n")
	return out.Bytes()
}

// formatAddressList parses a rendered address list (RFC 5322 §3.4) and
// writes it back with display names as encoded words where needed.
func formatAddressList(s string) (string, error) {
	list, err := mail.ParseAddressList(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("invalid address %q: %w", s, err)
	}
	out := make([]string, len(list))
	for i, a := range list {
		if err := CheckAddress(a.Address); err != nil {
			return "", fmt.Errorf("invalid address %q: %w", a.Address, err)
		}
		out[i] = a.String()
	}
	return strings.Join(out, ", "), nil
}

// encodeWords makes a rendered header value safe: line breaks become
// spaces (a value must not add fields), and non-ASCII text becomes RFC
// 2047 encoded words.
func encodeWords(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(v)
	}
	if isASCII(v) {
		return v
	}
	return mime.QEncoding.Encode("utf-8", v)
}

// writeField writes "Name: value" folded at spaces to lines of at most 78
// characters where the words allow (RFC 5322 §2.2.3); an encoded word
// (at most 75 characters, RFC 2047 §2) then fits on a line of its own.
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteByte(':')
	line := len(name) + 1
	for _, word := range strings.Split(value, " ") {
		if line+1+len(word) > 78 && word != "" {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteByte(' ')
		b.WriteString(word)
		line += 1 + len(word)
	}
	b.WriteString("\r\n")
}

// isASCIIBytes reports whether b has only 7-bit octets, 8 at a time.
func isASCIIBytes(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// maxLineLen is the longest line of b, CRLF excluded.
func maxLineLen(b []byte) int {
	longest := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return max(longest, len(b))
		}
		longest = max(longest, len(bytes.TrimSuffix(b[:i], []byte("\r"))))
		b = b[i+1:]
	}
	return longest
}

// renderRaw renders a raw message template and completes its header with
// the trace field, Date, Message-ID, To and MIME-Version when missing.
func (t *Template) renderRaw(data map[string]any, r *Recipient, meta Meta, bufs *Buffers) (Rendered, error) {
	buf := &bufs.text
	if err := t.raw.execute(buf, t.max, data); err != nil {
		return Rendered{}, err
	}
	msg := crlf.Normalize(buf.Bytes())
	if bytes.IndexByte(msg, 0) >= 0 {
		return Rendered{}, errors.New("NUL character in message")
	}
	if maxLineLen(msg) > maxLine {
		return Rendered{}, errors.New("message line longer than 998 characters (RFC 5321 §4.5.3.1.6)")
	}
	hdr, body, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		if bytes.HasPrefix(msg, []byte("\r\n")) {
			hdr, body = nil, msg[2:]
		} else {
			hdr, body = bytes.TrimSuffix(msg, []byte("\r\n")), nil
		}
	}
	names := fieldNames(hdr)
	if !names["from"] {
		return Rendered{}, errors.New("raw message has no From field (RFC 5322 §3.6)")
	}
	out := bufs.output(len(msg) + 512)
	out.WriteString(meta.Received)
	if !names["date"] {
		writeField(out, "Date", meta.Date.Format(time.RFC1123Z))
	}
	if !names["message-id"] {
		writeField(out, "Message-ID", "<"+meta.MessageID+">")
	}
	if !names["to"] {
		writeField(out, "To", (&mail.Address{Name: r.Name, Address: r.Email}).String())
	}
	if len(hdr) > 0 {
		out.Write(hdr)
		out.WriteString("\r\n")
	}
	if !names["mime-version"] && names["content-type"] {
		writeField(out, "MIME-Version", "1.0")
	}
	out.WriteString("\r\n")
	out.Write(body)
	return Rendered{Body: out.Bytes(), Body8Bit: !isASCIIBytes(body)}, nil
}

// fieldNames lists the lower-cased names of the fields of a header block.
func fieldNames(hdr []byte) map[string]bool {
	m := map[string]bool{}
	for _, l := range bytes.Split(hdr, []byte("\r\n")) {
		if len(l) == 0 || l[0] == ' ' || l[0] == '\t' {
			continue
		}
		if k, _, ok := bytes.Cut(l, []byte(":")); ok {
			m[strings.ToLower(strings.TrimSpace(string(k)))] = true
		}
	}
	return m
}
