package smtpd

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// ext says which extensions a session may use in MAIL and RCPT.
type ext struct {
	utf8, dsn, requireTLS bool
}

func syntaxErr(msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: msg}
}

// RFC 5321 §4.1.1.11 / RFC 1869 §6: an unknown or unoffered parameter is 555.
func unsupportedParam(name string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 555, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "unsupported parameter " + name}
}

// parseCommand splits a command line into its upper-cased verb and the
// argument after the first space (RFC 5321 §4.1.1: verbs are
// case-insensitive).
func parseCommand(line string) (verb, arg string) {
	verb, arg, _ = strings.Cut(line, " ")
	if len(verb) > 12 {
		return "", "" // no verb is that long: unrecognized
	}
	return strings.ToUpper(verb), strings.TrimLeft(arg, " ")
}

// cutPrefixFold removes prefix from s, ignoring ASCII case.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// parsePath reads a reverse- or forward-path (RFC 5321 §4.1.2): <mailbox>,
// <> or, leniently, a bare mailbox. A source route (<@a,@b:user@c>) is
// dropped as §C allows. It returns the mailbox and what follows.
func parsePath(s string) (addr, rest string, err error) {
	s = strings.TrimLeft(s, " ")
	if !strings.HasPrefix(s, "<") {
		addr, rest, _ = strings.Cut(s, " ")
		if addr == "" || strings.ContainsAny(addr, "<>") {
			return "", "", syntaxErr("syntax: expected <address>")
		}
		return addr, rest, nil
	}
	quoted := false
	for i := 1; i < len(s); i++ {
		switch ch := s[i]; {
		case quoted && ch == '\\':
			i++ // quoted-pair
		case ch == '"':
			quoted = !quoted
		case !quoted && ch == '<':
			return "", "", syntaxErr("syntax: unexpected < in address")
		case !quoted && ch == '>':
			addr, rest = s[1:i], s[i+1:]
			if rest != "" && rest[0] != ' ' {
				return "", "", syntaxErr("syntax: expected space after address")
			}
			if strings.HasPrefix(addr, "@") {
				if j := strings.IndexByte(addr, ':'); j > 0 {
					addr = addr[j+1:]
				}
			}
			return addr, rest, nil
		}
	}
	return "", "", syntaxErr("syntax: address lacks a closing >")
}

// splitParams returns each esmtp-keyword[=value] (RFC 5321 §4.1.2) with the
// keyword upper-cased; a keyword given twice is an error.
func splitParams(s string) ([][2]string, error) {
	var out [][2]string
	for _, f := range strings.Fields(s) {
		k, v, hasV := strings.Cut(f, "=")
		k = strings.ToUpper(k)
		if k == "" || hasV && v == "" {
			return nil, syntaxErr("syntax: malformed parameter " + f)
		}
		for _, o := range out {
			if o[0] == k {
				return nil, syntaxErr("parameter " + k + " given twice")
			}
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// parseMail parses the argument of MAIL: "FROM:<path> [params]".
func parseMail(arg string, e ext) (string, *smtp.MailOptions, error) {
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		return "", nil, syntaxErr("syntax: MAIL FROM:<address>")
	}
	from, rest, err := parsePath(rest)
	if err != nil {
		return "", nil, err
	}
	params, err := splitParams(rest)
	if err != nil {
		return "", nil, err
	}
	opts := &smtp.MailOptions{}
	for _, p := range params {
		k, v := p[0], p[1]
		switch k {
		case "SIZE": // RFC 1870 §3
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || len(v) > 20 || strings.TrimLeft(v, "0123456789") != "" {
				return "", nil, syntaxErr("invalid SIZE value")
			}
			opts.Size = n
		case "BODY": // RFC 6152 §2
			switch strings.ToUpper(v) {
			case "7BIT":
				opts.Body = smtp.Body7Bit
			case "8BITMIME":
				opts.Body = smtp.Body8BitMIME
			case "BINARYMIME":
				return "", nil, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "BINARYMIME not supported"}
			default:
				return "", nil, syntaxErr("invalid BODY value")
			}
		case "SMTPUTF8": // RFC 6531 §3.4
			if !e.utf8 {
				return "", nil, unsupportedParam(k)
			}
			if v != "" {
				return "", nil, syntaxErr("SMTPUTF8 takes no value")
			}
			opts.UTF8 = true
		case "REQUIRETLS": // RFC 8689 §4.1
			if !e.requireTLS {
				return "", nil, unsupportedParam(k)
			}
			if v != "" {
				return "", nil, syntaxErr("REQUIRETLS takes no value")
			}
			opts.RequireTLS = true
		case "RET": // RFC 3461 §4.3
			if !e.dsn {
				return "", nil, unsupportedParam(k)
			}
			switch strings.ToUpper(v) {
			case "FULL":
				opts.Return = smtp.DSNReturnFull
			case "HDRS":
				opts.Return = smtp.DSNReturnHeaders
			default:
				return "", nil, syntaxErr("invalid RET value")
			}
		case "ENVID": // RFC 3461 §4.4
			if !e.dsn {
				return "", nil, unsupportedParam(k)
			}
			id, err := decodeXtext(v)
			if err != nil || len(v) > 100 {
				return "", nil, syntaxErr("invalid ENVID value")
			}
			opts.EnvelopeID = id
		case "AUTH": // RFC 4954 §5
			a := ""
			if v != "<>" {
				if a, err = decodeXtext(v); err != nil {
					return "", nil, syntaxErr("invalid AUTH value")
				}
			}
			opts.Auth = &a
		default:
			return "", nil, unsupportedParam(k)
		}
	}
	if !opts.UTF8 && !isASCII(from) {
		// RFC 6531 §3.4: non-ASCII addresses need SMTPUTF8.
		return "", nil, &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "non-ASCII address requires SMTPUTF8"}
	}
	return from, opts, nil
}

// parseRcpt parses the argument of RCPT: "TO:<path> [params]".
func parseRcpt(arg string, e ext) (string, *smtp.RcptOptions, error) {
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		return "", nil, syntaxErr("syntax: RCPT TO:<address>")
	}
	to, rest, err := parsePath(rest)
	if err != nil {
		return "", nil, err
	}
	params, err := splitParams(rest)
	if err != nil {
		return "", nil, err
	}
	opts := &smtp.RcptOptions{}
	for _, p := range params {
		k, v := p[0], p[1]
		switch k {
		case "NOTIFY": // RFC 3461 §4.1
			if !e.dsn {
				return "", nil, unsupportedParam(k)
			}
			if opts.Notify, err = parseNotify(v); err != nil {
				return "", nil, err
			}
		case "ORCPT": // RFC 3461 §4.2
			if !e.dsn {
				return "", nil, unsupportedParam(k)
			}
			typ, addr, ok := strings.Cut(v, ";")
			if !ok || typ == "" || addr == "" {
				return "", nil, syntaxErr("invalid ORCPT value")
			}
			typ = strings.ToUpper(typ)
			var dec string
			if typ == string(smtp.DSNAddressTypeUTF8) {
				dec, err = decodeUTF8AddrXtext(addr) // RFC 6533 §3
			} else {
				dec, err = decodeXtext(addr)
			}
			if err != nil {
				return "", nil, syntaxErr("invalid ORCPT value")
			}
			opts.OriginalRecipientType = smtp.DSNAddressType(typ)
			opts.OriginalRecipient = dec
		default:
			return "", nil, unsupportedParam(k)
		}
	}
	return to, opts, nil
}

// parseNotify reads NEVER or a list of SUCCESS, FAILURE and DELAY.
func parseNotify(v string) ([]smtp.DSNNotify, error) {
	var out []smtp.DSNNotify
	for _, n := range strings.Split(strings.ToUpper(v), ",") {
		var d smtp.DSNNotify
		switch n {
		case "NEVER":
			d = smtp.DSNNotifyNever
		case "SUCCESS":
			d = smtp.DSNNotifySuccess
		case "FAILURE":
			d = smtp.DSNNotifyFailure
		case "DELAY":
			d = smtp.DSNNotifyDelayed
		default:
			return nil, syntaxErr("invalid NOTIFY value")
		}
		for _, o := range out {
			if o == d {
				return nil, syntaxErr("invalid NOTIFY value")
			}
		}
		out = append(out, d)
	}
	if len(out) > 1 {
		for _, o := range out {
			if o == smtp.DSNNotifyNever {
				return nil, syntaxErr("NOTIFY=NEVER cannot be combined")
			}
		}
	}
	return out, nil
}

// decodeXtext decodes RFC 3461 §4 xtext: printable ASCII except "+" and
// "=", with "+XX" (two upper-case hex digits) for any octet.
func decodeXtext(s string) (string, error) {
	if strings.IndexByte(s, '+') < 0 {
		for i := 0; i < len(s); i++ {
			if s[i] < 33 || s[i] > 126 || s[i] == '=' {
				return "", syntaxErr("invalid xtext")
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '+':
			if i+2 >= len(s) {
				return "", syntaxErr("invalid xtext")
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi < 0 || lo < 0 {
				return "", syntaxErr("invalid xtext")
			}
			b = append(b, byte(hi<<4|lo))
			i += 2
		case ch < 33 || ch > 126 || ch == '=':
			return "", syntaxErr("invalid xtext")
		default:
			b = append(b, ch)
		}
	}
	return string(b), nil
}

// decodeUTF8AddrXtext decodes RFC 6533 §3 utf-8-addr-xtext and -unitext:
// "\x{HEX}" stands for a code point; UTF-8 may appear as it is.
func decodeUTF8AddrXtext(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", syntaxErr("invalid utf-8-addr")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\':
			if !strings.HasPrefix(s[i:], `\x{`) {
				return "", syntaxErr("invalid utf-8-addr")
			}
			end := strings.IndexByte(s[i:], '}')
			if end < 4 || end > 9 {
				return "", syntaxErr("invalid utf-8-addr")
			}
			cp, err := strconv.ParseUint(s[i+3:i+end], 16, 32)
			if err != nil || !utf8.ValidRune(rune(cp)) {
				return "", syntaxErr("invalid utf-8-addr")
			}
			b.WriteRune(rune(cp))
			i += end
		case ch == '+' || ch == '=' || ch < 33 || ch == 127:
			return "", syntaxErr("invalid utf-8-addr")
		default:
			b.WriteByte(ch)
		}
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	case c >= 'a' && c <= 'f': // lenient: RFC 3461 asks for upper case
		return int(c - 'a' + 10)
	}
	return -1
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
