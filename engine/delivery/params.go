package delivery

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// validPath reports whether addr can go between the angle brackets of a
// MAIL or RCPT command without changing the command: no control characters
// (CR and LF would inject commands) and no angle brackets.
func validPath(addr string) bool {
	for i := 0; i < len(addr); i++ {
		switch b := addr[i]; {
		case b < 0x20, b == 0x7f, b == '<', b == '>':
			return false
		}
	}
	return utf8.ValidString(addr)
}

// isASCII reports whether s has only 7-bit characters.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// headerIs8Bit reports whether the message header (up to the first empty
// line) contains 8-bit bytes.
func headerIs8Bit(body []byte) bool {
	end := len(body)
	if i := bytes.Index(body, []byte("\n\r\n")); i >= 0 {
		end = i
	}
	if i := bytes.Index(body[:end], []byte("\n\n")); i >= 0 {
		end = i
	}
	for _, b := range body[:end] {
		if b >= 0x80 {
			return true
		}
	}
	return false
}

// xtext encodes s per RFC 3461 §4: "+" followed by two upper-case hex
// digits for any byte outside "!".."~", and for "+" and "=".
func xtext(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < '!' || b > '~' || b == '+' || b == '=' {
			fmt.Fprintf(&sb, "+%02X", b)
			continue
		}
		sb.WriteByte(b)
	}
	return sb.String()
}

// utf8AddrText encodes s per RFC 6533 §3: utf-8-addr-xtext when unicode is
// false (non-ASCII as "\x{HEX}"), utf-8-addr-unitext when true (non-ASCII
// kept, for SMTPUTF8 sessions). "+", "=", "\" and controls are always escaped.
func utf8AddrText(s string, unicode bool) string {
	var sb strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError, r < '!', r == 0x7f, r == '+', r == '=', r == '\\', r >= 0x80 && !unicode:
			fmt.Fprintf(&sb, `\x{%02X}`, r)
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// orcptParam renders an ORCPT value (RFC 3461 §4.2). orcpt is the original
// recipient, decoded, optionally prefixed with its address type ("rfc822;"
// or "utf-8;"). A non-ASCII address takes the utf-8 type (RFC 6533 §3).
func orcptParam(orcpt string, smtputf8 bool) string {
	typ, addr := "rfc822", orcpt
	if t, a, ok := strings.Cut(orcpt, ";"); ok && isAtom(t) {
		typ, addr = strings.ToLower(t), a
	}
	if addr == "" {
		return ""
	}
	if typ == "utf-8" || !isASCII(addr) {
		return "utf-8;" + utf8AddrText(addr, smtputf8)
	}
	return typ + ";" + xtext(addr)
}

func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-') {
			return false
		}
	}
	return true
}

// notifyParam validates a NOTIFY value (RFC 3461 §4.1): "NEVER" alone, or a
// comma-separated list of SUCCESS, FAILURE and DELAY. It returns the
// upper-cased value, or "" when invalid.
func notifyParam(n string) string {
	n = strings.ToUpper(strings.ReplaceAll(n, " ", ""))
	if n == "NEVER" {
		return n
	}
	seen := map[string]bool{}
	for _, v := range strings.Split(n, ",") {
		if (v != "SUCCESS" && v != "FAILURE" && v != "DELAY") || seen[v] {
			return ""
		}
		seen[v] = true
	}
	return n
}

// envidParam encodes ENVID (RFC 3461 §4.4): printable ASCII, at most 100
// characters; anything else is dropped rather than sent malformed.
func envidParam(id string) string {
	if id == "" || len(id) > 100 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return ""
		}
	}
	return xtext(id)
}

// mailCommand renders MAIL FROM with the parameters the server advertised.
func (c *Conn) mailCommand(env Envelope, size int64, utf8 bool) string {
	var sb strings.Builder
	sb.WriteString("MAIL FROM:<")
	sb.WriteString(env.From)
	sb.WriteByte('>')
	if c.Has("SIZE") {
		sb.WriteString(" SIZE=" + strconv.FormatInt(size, 10)) // RFC 1870 §6
	}
	if env.Body8Bit {
		sb.WriteString(" BODY=8BITMIME") // RFC 6152 §3
	}
	if utf8 {
		sb.WriteString(" SMTPUTF8") // RFC 6531 §3.4
	}
	if env.RequireTLS && c.Has("REQUIRETLS") {
		sb.WriteString(" REQUIRETLS") // RFC 8689 §4.2.1 step 4
	}
	if c.Has("DSN") {
		if ret := strings.ToUpper(env.Ret); ret == "FULL" || ret == "HDRS" {
			sb.WriteString(" RET=" + ret) // RFC 3461 §4.3
		}
		if id := envidParam(env.EnvID); id != "" {
			sb.WriteString(" ENVID=" + id) // RFC 3461 §4.4
		}
	}
	return sb.String()
}

// rcptCommand renders RCPT TO; NOTIFY and ORCPT only when DSN was
// advertised (RFC 3461 §4).
func (c *Conn) rcptCommand(r Rcpt, utf8 bool) string {
	var sb strings.Builder
	sb.WriteString("RCPT TO:<")
	sb.WriteString(r.Addr)
	sb.WriteByte('>')
	if c.Has("DSN") {
		if n := notifyParam(r.Notify); n != "" {
			sb.WriteString(" NOTIFY=" + n) // RFC 3461 §4.1
		}
		if r.ORcpt != "" {
			if o := orcptParam(r.ORcpt, utf8); o != "" {
				sb.WriteString(" ORCPT=" + o) // RFC 3461 §4.2
			}
		}
	}
	return sb.String()
}

// writeBody writes the message for DATA: each line dot-stuffed (RFC 5321
// §4.5.2), bare LF turned into CRLF, a final CRLF added if missing, then
// the terminating "." line (RFC 5321 §4.1.1.4).
func writeBody(w *bufio.Writer, body []byte) error {
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.') // RFC 5321 §4.5.2: transparency
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		w.Write(line)
		w.WriteString("\r\n")
	}
	_, err := w.WriteString(".\r\n")
	return err
}
