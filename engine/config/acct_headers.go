package config

import (
	"fmt"
	"strings"
)

// validateAcctHeaders checks [acct] header-fields: each an RFC 5322 §3.6.8
// field name (printable US-ASCII but the colon), none listed twice in any
// case (field names are case-insensitive, RFC 5322 §1.2.2).
func (c *Config) validateAcctHeaders(p *problems) {
	for i, n := range c.Acct.HeaderFields {
		k := fmt.Sprintf("acct.header-fields[%d]", i)
		if !fieldName(n) {
			p.add(k, "%q is not a header field name (RFC 5322: printable ASCII, no spaces or colon)", n)
			continue
		}
		for _, m := range c.Acct.HeaderFields[:i] {
			if strings.EqualFold(m, n) {
				p.add(k, "%q is listed twice", n)
				break
			}
		}
	}
}

// fieldName reports whether s is an RFC 5322 field name (ftext+).
func fieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}
