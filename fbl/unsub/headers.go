package unsub

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// PostValue is the List-Unsubscribe-Post value, and the key=value pair the
// one-click POST must carry (RFC 8058 §3.1).
const PostValue = "List-Unsubscribe=One-Click"

// LocalPrefix starts the local-part of the mailto form: unsub+TOKEN@DOMAIN.
const LocalPrefix = "unsub+"

// Headers returns the List-Unsubscribe value (RFC 2369 §3.2) and the
// List-Unsubscribe-Post value (RFC 8058 §3.1) for token:
//
//	<BASE/u/TOKEN>, <mailto:unsub+TOKEN@DOMAIN>
//	List-Unsubscribe=One-Click
//
// Without mailtoDomain the mailto URI is left out. Without baseURL only the
// mailto URI is given and listUnsubscribePost is empty, since one-click
// needs an HTTPS URI (RFC 8058 §3.1); with neither both are empty. The
// values are unfolded; a header writer may fold after the comma. Both
// headers must be added before DKIM signing and covered by the signature
// (RFC 8058 §4). Handler serves the /u/ path at the root of baseURL's host
// (use http.StripPrefix if baseURL has a path).
func Headers(baseURL, mailtoDomain, token string) (listUnsubscribe, listUnsubscribePost string) {
	var uris []string
	if baseURL != "" {
		uris = append(uris, "<"+strings.TrimRight(baseURL, "/")+"/u/"+token+">")
		listUnsubscribePost = PostValue
	}
	if mailtoDomain != "" {
		uris = append(uris, "<mailto:"+LocalPrefix+token+"@"+mailtoDomain+">")
	}
	return strings.Join(uris, ", "), listUnsubscribePost
}

// CheckBaseURL validates a configured base URL: absolute, https (RFC 8058
// §3.1), with no query or fragment. Plain http is accepted only for a
// loopback host, for tests.
func CheckBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("unsub: base-url: %w", err)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("unsub: base-url %q: want https://host[/path]", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("unsub: base-url %q: one-click unsubscribe needs https (RFC 8058 §3.1)", s)
}

// TokenFromAddress returns the token of a mailto-form address: the
// local-part "unsub+TOKEN" (prefix matched case-insensitively), or a whole
// address "unsub+TOKEN@domain". ok is false for anything else; the token
// still has to pass ParseToken.
func TokenFromAddress(localpart string) (token string, ok bool) {
	lp := localpart
	if i := strings.LastIndexByte(lp, '@'); i >= 0 {
		lp = lp[:i]
	}
	if len(lp) <= len(LocalPrefix) || len(lp) > len(LocalPrefix)+MaxTokenLen || !strings.EqualFold(lp[:len(LocalPrefix)], LocalPrefix) {
		return "", false
	}
	tok := lp[len(LocalPrefix):]
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", false
		}
	}
	return tok, true
}
