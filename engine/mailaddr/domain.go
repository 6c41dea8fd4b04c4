// Package mailaddr holds the address syntax checks shared by the ways mail
// enters Sluice (SMTP and HTTP injection).
package mailaddr

import (
	"errors"
	"net/netip"
	"strings"
)

// CheckDomain accepts a host name (RFC 5321 §4.1.2 Domain, with UTF-8
// labels allowed for SMTPUTF8, RFC 6531) or an address literal [1.2.3.4] /
// [IPv6:...] (RFC 5321 §4.1.3).
func CheckDomain(d string) error {
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
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("invalid domain")
		}
		for _, r := range label {
			if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r >= 0x80) {
				return errors.New("invalid domain")
			}
		}
	}
	return nil
}
