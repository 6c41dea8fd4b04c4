package listener

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// checkAddress validates a mailbox as go-smtp hands it over (brackets
// removed). It is deliberately simple: local@domain, where domain is a
// dot-separated host name or an address literal (RFC 5321 §4.1.2), no
// control characters, and the RFC 5321 §4.5.3.1 length limits. The empty
// reverse-path is allowed for MAIL only.
func checkAddress(addr string, isSender bool) error {
	if addr == "" {
		if isSender {
			return nil // RFC 5321 §4.5.5 null reverse-path
		}
		return errors.New("empty address")
	}
	if len(addr) > 254 {
		return errors.New("address too long")
	}
	if !utf8.ValidString(addr) {
		return errors.New("invalid UTF-8")
	}
	for _, r := range addr {
		if r < 0x20 || r == 0x7f {
			return errors.New("control character in address")
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
	if strings.ContainsAny(local, " <>") && !strings.HasPrefix(local, `"`) {
		return errors.New("invalid local part")
	}
	return checkDomain(domain)
}

// checkDomain accepts a host name (RFC 5321 §4.1.2 Domain, with UTF-8
// labels allowed for SMTPUTF8) or an address literal [1.2.3.4] / [IPv6:...].
func checkDomain(d string) error {
	if strings.HasPrefix(d, "[") && strings.HasSuffix(d, "]") {
		lit := strings.TrimPrefix(d[1:len(d)-1], "IPv6:")
		if _, err := netip.ParseAddr(lit); err != nil {
			return errors.New("invalid address literal")
		}
		return nil
	}
	if len(d) > 253 {
		return errors.New("domain too long")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("invalid domain")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("invalid domain")
		}
		for _, r := range label {
			ok := r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r >= 0x80
			if !ok {
				return errors.New("invalid domain")
			}
		}
	}
	return nil
}
