// Package dkim signs outgoing mail (RFC 6376; Ed25519 by RFC 8463) with
// go-msgauth. A Signer is a submit.Transform: it runs once per message, at
// spool time, so the signature is stored with the body and every attempt
// and every recipient get the same bytes. It picks the keys by the domain
// of the From address; keys never appear in errors or logs.
package dkim

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/sluice-mta/sluice/engine/reply"
	"github.com/sluice-mta/sluice/engine/spool"
)

// Key is one signing key: mail is signed as d=Domain s=Selector.
type Key struct {
	Domain   string
	Selector string
	Signer   crypto.Signer // *rsa.PrivateKey or ed25519.PrivateKey
}

// Options configure a Signer.
type Options struct {
	Keys []Key
	// DefaultDomain's keys sign mail whose From domain has none; "" leaves
	// such mail unsigned.
	DefaultDomain string
}

// SignedHeaders are the header fields signed when present, in the order
// they enter h= (RFC 6376 §5.4.1 recommends these). From is listed once
// more than it occurs ("oversigned", §8.15), so a From added in transit
// breaks the signature.
var SignedHeaders = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
	"List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID",
}

// Signer signs messages with the keys of their From domain.
type Signer struct {
	byDomain map[string][]Key
	def      string
}

// New checks the keys and returns a Signer.
func New(opts Options) (*Signer, error) {
	s := &Signer{byDomain: map[string][]Key{}, def: normDomain(opts.DefaultDomain)}
	for _, k := range opts.Keys {
		switch k.Signer.(type) {
		case *rsa.PrivateKey, ed25519.PrivateKey:
		default:
			return nil, fmt.Errorf("dkim: %s selector %s: unsupported key type %T", k.Domain, k.Selector, k.Signer)
		}
		if k.Domain == "" || k.Selector == "" {
			return nil, errors.New("dkim: a key needs a domain and a selector")
		}
		d := normDomain(k.Domain)
		k.Domain = d
		s.byDomain[d] = append(s.byDomain[d], k)
	}
	if s.def != "" && len(s.byDomain[s.def]) == 0 {
		return nil, fmt.Errorf("dkim: default domain %s has no key", s.def)
	}
	return s, nil
}

// Transform signs body (submit.Transform): the DKIM-Signature fields are
// put in front of it. Mail with no key for its From domain, and no default
// domain, is returned unchanged.
func (s *Signer) Transform(_ context.Context, _ *spool.Message, body []byte) ([]byte, error) {
	out, err := s.Sign(body)
	if err != nil {
		return nil, reply.Wrap(451, reply.Status{4, 3, 0}, "could not sign the message, try again later", err)
	}
	return out, nil
}

// KeysFor returns the keys that sign mail from domain: its own, or the
// default domain's.
func (s *Signer) KeysFor(domain string) []Key {
	if ks := s.byDomain[normDomain(domain)]; len(ks) > 0 {
		return ks
	}
	if s.def != "" {
		return s.byDomain[s.def]
	}
	return nil
}

// Sign returns msg (a whole message, CRLF line ends) with one
// DKIM-Signature field per key of its From domain in front, or msg itself
// when no key applies.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	head, ok := headerOf(msg)
	if !ok {
		return nil, errors.New("dkim: message has no header/body separator")
	}
	keys := s.KeysFor(fromDomain(head))
	if len(keys) == 0 {
		return msg, nil
	}
	hk := HeaderKeys(head)
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sig, err := signOne(msg, k, hk)
		if err != nil {
			// msgdkim's errors are about the message or the options, never the key.
			return nil, fmt.Errorf("dkim: %s s=%s: %w", k.Domain, k.Selector, err)
		}
		sigs[i] = sig
	}
	n := len(msg)
	for _, sig := range sigs {
		n += len(sig)
	}
	out := make([]byte, 0, n)
	for _, sig := range sigs {
		out = append(out, sig...)
	}
	return append(out, msg...), nil
}

// signOne returns the DKIM-Signature field (with its CRLF) for msg.
func signOne(msg []byte, k Key, headerKeys []string) (string, error) {
	sg, err := msgdkim.NewSigner(&msgdkim.SignOptions{
		Domain:                 k.Domain,
		Selector:               k.Selector,
		Signer:                 k.Signer,
		Hash:                   crypto.SHA256, // RFC 8301 §3.1: rsa-sha1 must not be used
		HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
		BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
		HeaderKeys:             headerKeys,
	})
	if err != nil {
		return "", err
	}
	if _, err := sg.Write(msg); err != nil {
		sg.Close()
		return "", err
	}
	if err := sg.Close(); err != nil {
		return "", err
	}
	return sg.Signature(), nil
}

// headerOf returns the header block of msg, up to and including the CRLF
// that ends its last field.
func headerOf(msg []byte) ([]byte, bool) {
	if len(msg) >= 2 && msg[0] == '\r' && msg[1] == '\n' {
		return msg[:0], true // no header fields at all
	}
	for i := 0; i+3 < len(msg); i++ {
		if msg[i] == '\r' && msg[i+1] == '\n' && msg[i+2] == '\r' && msg[i+3] == '\n' {
			return msg[:i+2], true
		}
	}
	if len(msg) >= 2 && string(msg[len(msg)-2:]) == "\r\n" {
		return msg, true // a header without a body
	}
	return nil, false
}

// fields calls fn with the name and the unfolded value of each field of head.
func fields(head []byte, fn func(name, value string)) {
	var name, value string
	flush := func() {
		if name != "" {
			fn(name, value)
		}
		name, value = "", ""
	}
	for line := range strings.SplitSeq(string(head), "\r\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			value += line
			continue
		}
		flush()
		n, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name, value = strings.TrimSpace(n), v
	}
	flush()
}

// HeaderKeys returns the h= list for a message header: each SignedHeaders
// name as many times as the header has it, and From once more.
func HeaderKeys(head []byte) []string {
	count := make(map[string]int, len(SignedHeaders))
	fields(head, func(name, _ string) {
		count[strings.ToLower(name)]++
	})
	var keys []string
	for _, h := range SignedHeaders {
		n := count[strings.ToLower(h)]
		if h == "From" {
			n++ // RFC 6376 §8.15: sign one From more than there is
		}
		for range n {
			keys = append(keys, h)
		}
	}
	return keys
}

// fromDomain returns the lower-case domain of the first address in the
// first From field, or "".
func fromDomain(head []byte) string {
	var from string
	found := false
	fields(head, func(name, value string) {
		if !found && strings.EqualFold(name, "From") {
			from, found = value, true
		}
	})
	if !found {
		return ""
	}
	if list, err := mail.ParseAddressList(from); err == nil && len(list) > 0 {
		return domainOf(list[0].Address)
	}
	// Not RFC 5322 (a bare address in odd quoting): take the first <...>,
	// or the whole value.
	if i := strings.IndexByte(from, '<'); i >= 0 {
		if j := strings.IndexByte(from[i:], '>'); j > 0 {
			return domainOf(from[i+1 : i+j])
		}
	}
	return domainOf(strings.TrimSpace(from))
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return normDomain(addr[i+1:])
}

func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// PublicRecord returns the TXT record that publishes pub at
// SELECTOR._domainkey.DOMAIN: "v=DKIM1; k=rsa; p=…" with the DER
// SubjectPublicKeyInfo for RSA (RFC 6376 §3.6.1), or "k=ed25519" with the
// raw 32-byte key (RFC 8463 §4).
func PublicRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("dkim: unsupported public key type %T", pub)
}

// ParseRecord parses a published DKIM key record (RFC 6376 §3.6.1) and
// returns its public key; a record with an empty p= (a revoked key) is an
// error.
func ParseRecord(txt string) (crypto.PublicKey, error) {
	tags := map[string]string{}
	for t := range strings.SplitSeq(txt, ";") {
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
	}
	if v, ok := tags["v"]; ok && v != "DKIM1" {
		return nil, fmt.Errorf("v=%s is not DKIM1", v)
	}
	p, ok := tags["p"]
	if !ok {
		return nil, errors.New("no p= tag")
	}
	if p == "" {
		return nil, errors.New("p= is empty: the key is revoked")
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, errors.New("p= is not base64")
	}
	switch kt := tags["k"]; kt {
	case "", "rsa":
		if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
			if rk, ok := pub.(*rsa.PublicKey); ok {
				return rk, nil
			}
			return nil, errors.New("k=rsa but p= holds another key type")
		}
		if rk, err := x509.ParsePKCS1PublicKey(der); err == nil {
			return rk, nil
		}
		return nil, errors.New("p= is not an RSA public key")
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("p= has %d bytes, an Ed25519 key has %d", len(der), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(der), nil
	default:
		return nil, fmt.Errorf("unknown key type k=%s", kt)
	}
}

// SamePublic reports whether the published key a is the public half of
// the signer's key b.
func SamePublic(a crypto.PublicKey, b crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := b.Public().(equaler)
	return ok && e.Equal(a)
}
