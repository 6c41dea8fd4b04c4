package mailmsg

import (
	"net/mail"
	"regexp"
	"strings"
)

// CleanAddress returns s as a mailbox address "local@domain" if it holds
// one, after removing what commonly surrounds an address in reports and
// bounces: white space, an RFC 3464 address type ("rfc822;"), angle
// brackets, "mailto:", a source route ("@relay.example:"), a trailing dot or
// comma. It returns "" for anything else: a pipe command, a bare local part,
// a domain with a single label, text with spaces, another address type. Case
// is kept; a quoted local part keeps its quotes.
func CleanAddress(s string) string {
	s = strings.TrimSpace(s)
	if t, rest, ok := strings.Cut(s, ";"); ok && isAtom(t) {
		switch strings.ToLower(strings.TrimSpace(t)) {
		case "rfc822", "utf-8": // RFC 3464 §2.3.2, RFC 6533 §3
			s = strings.TrimSpace(rest)
		default:
			return ""
		}
	}
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			s = strings.TrimSpace(s[i+1 : i+j])
		} else {
			s = strings.TrimSpace(s[i+1:])
		}
	}
	if len(s) > 7 && strings.EqualFold(s[:7], "mailto:") {
		s = s[7:]
	}
	if strings.HasPrefix(s, "@") { // RFC 5321 §4.1.2 source route: "@a,@b:user@c"
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			s = s[i+1:]
		}
	}
	s = strings.TrimRight(s, ".,;")
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || len(s) > 320 {
		return ""
	}
	if local, domain := s[:at], s[at+1:]; validLocal(local) && validDomain(domain) {
		return s
	}
	return ""
}

func isAtom(s string) bool {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func validLocal(l string) bool {
	if len(l) > 256 {
		return false
	}
	if len(l) >= 2 && l[0] == '"' && l[len(l)-1] == '"' {
		return !strings.ContainsAny(l[1:len(l)-1], "\"\r\n")
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; c <= ' ' || c == 0x7f || strings.IndexByte(`<>()[]\,;:"@`, c) >= 0 {
			return false
		}
	}
	return true
}

func validDomain(d string) bool {
	if len(d) > 255 {
		return false
	}
	if len(d) > 2 && d[0] == '[' && d[len(d)-1] == ']' { // address literal
		return !strings.ContainsAny(d[1:len(d)-1], "[]\\ \t")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// addrRE finds addresses in free text; CleanAddress checks each hit.
var addrRE = regexp.MustCompile(`(?:"[^"\n]{1,64}"|[A-Za-z0-9!#$%&'*+/=?^_` + "`" + `{|}~.-]{1,64})@(?:\[[0-9A-Fa-f:.]{2,45}\]|(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{1,63})`)

// FindAddresses returns up to max distinct addresses (compared without
// case) that occur in free text, in order of first appearance.
func FindAddresses(s string, max int) []string {
	var out []string
	for _, m := range addrRE.FindAllString(s, 4*max) {
		if a := CleanAddress(strings.TrimLeft(m, ".")); a != "" && !containsFold(out, a) {
			out = append(out, a)
			if len(out) == max {
				break
			}
		}
	}
	return out
}

// AddressList returns the distinct addresses of an address-list header
// value such as To or X-Failed-Recipients (RFC 5322 §3.4). Values that
// net/mail rejects are searched for addresses instead, so
// "<Undisclosed Recipients>" gives none.
func AddressList(v string) []string {
	const maxAddrs = 100
	list, err := mail.ParseAddressList(v)
	if err != nil {
		return FindAddresses(v, maxAddrs)
	}
	var out []string
	for _, a := range list {
		if c := CleanAddress(a.Address); c != "" && !containsFold(out, c) && len(out) < maxAddrs {
			out = append(out, c)
		}
	}
	return out
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
