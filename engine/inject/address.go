package inject

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/sluice-mta/sluice/engine/mailaddr"
)

// CheckAddress validates a mailbox given as a bare addr-spec, the way the
// SMTP listener validates RCPT TO: local@domain, where domain is a host
// name (UTF-8 labels allowed, RFC 6531) or an address literal (RFC 5321
// §4.1.2), no spaces or control characters, and the length limits of RFC
// 5321 §4.5.3.1.
func CheckAddress(addr string) error {
	if addr == "" {
		return errors.New("empty address")
	}
	if len(addr) > 254 {
		return errors.New("address too long")
	}
	if !utf8.ValidString(addr) {
		return errors.New("invalid UTF-8 in address")
	}
	for _, r := range addr {
		if r <= 0x20 || r == 0x7f || r == '<' || r == '>' || r == ',' {
			return errors.New("invalid character in address")
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return errors.New("address must be local@domain")
	}
	local, domain := addr[:at], addr[at+1:]
	if len(local) > 64 { // RFC 5321 §4.5.3.1.1
		return errors.New("local part too long")
	}
	if strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
		return errors.New("invalid local part") // RFC 5322 §3.4.1 dot-atom
	}
	return mailaddr.CheckDomain(domain)
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
