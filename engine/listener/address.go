package listener

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/sluice-mta/sluice/engine/mailaddr"
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
	return mailaddr.CheckDomain(domain)
}
