// Package unsub implements RFC 8058 one-click unsubscribe: the stateless,
// HMAC-authenticated token naming a recipient, scope and job; the
// List-Unsubscribe and List-Unsubscribe-Post header values that carry it;
// the HTTP handler that takes the one-click POST; and the mailto form's
// local-part (unsub+TOKEN@). What an unsubscription does (suppress the
// recipient, write the opt-out record) is the caller's, through a callback.
package unsub

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/sluice-mta/sluice/fbl/trace"
)

// Token is what an unsubscribe token carries.
type Token struct {
	Rcpt  string // the recipient to unsubscribe
	Scope string // the suppression scope: "" for global, else a source or tenant
	Job   string // the job (mailing) the message belonged to
}

// MaxTokenLen is the longest token ParseToken looks at.
const MaxTokenLen = 1024

const (
	version1 = 1
	macLen   = 12 // bytes of HMAC-SHA256 kept: 96 bits, above RFC 2104 §5's 80-bit floor
)

// macContext keeps these MACs apart from the trace header's, which may be
// made with the same secret.
var macContext = []byte("sluice-unsub\x00")

// Errors returned by ParseToken.
var (
	// ErrForged means the token does not authenticate under any key.
	ErrForged = errors.New("unsub: token does not authenticate")
	// ErrMalformed means the token authenticates but cannot be read.
	ErrMalformed = errors.New("unsub: authentic token in an unknown format")
)

var b64 = base64.RawURLEncoding.Strict()

// MakeToken returns the token for rcpt, scope and job, signed with key (at
// least trace.MinKeyLen bytes; the [fbl] secret serves). The token is
// unpadded base64url of a version byte, the three fields (each a uvarint
// length and the bytes) and a truncated HMAC-SHA256: about 72 characters
// for a 20-character address, a 10-character job and an 8-character scope.
// ParseToken refuses tokens over MaxTokenLen, so the fields together must
// stay under about 740 bytes.
func MakeToken(rcpt, scope, job string, key []byte) string {
	p := make([]byte, 0, 8+len(rcpt)+len(scope)+len(job)+macLen)
	p = append(p, version1)
	for _, f := range [3]string{rcpt, scope, job} {
		p = binary.AppendUvarint(p, uint64(len(f)))
		p = append(p, f...)
	}
	p = append(p, sum(key, p)...)
	return b64.EncodeToString(p)
}

// ParseToken checks tok against keys.Current and every keys.Old key, in
// constant time per key and always trying all of them, and returns what it
// carries. Anything that does not authenticate gives ErrForged.
func ParseToken(tok string, keys trace.Keys) (Token, error) {
	if len(tok) > MaxTokenLen {
		return Token{}, fmt.Errorf("%w: longer than %d characters", ErrForged, MaxTokenLen)
	}
	raw, err := b64.DecodeString(tok)
	if err != nil {
		return Token{}, fmt.Errorf("%w: not base64url", ErrForged)
	}
	if len(raw) < 1+3+macLen {
		return Token{}, fmt.Errorf("%w: too short", ErrForged)
	}
	payload, mac := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	ok := 0
	for i := -1; i < len(keys.Old); i++ {
		key := keys.Current
		if i >= 0 {
			key = keys.Old[i]
		}
		if len(key) == 0 { // an empty key is no secret at all
			continue
		}
		ok |= subtle.ConstantTimeCompare(mac, sum(key, payload))
	}
	if ok == 0 {
		return Token{}, ErrForged
	}
	if payload[0] != version1 {
		return Token{}, fmt.Errorf("%w: version %d", ErrMalformed, payload[0])
	}
	var f [3]string
	rest := payload[1:]
	for i := range f {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return Token{}, fmt.Errorf("%w: field %d truncated", ErrMalformed, i)
		}
		f[i] = string(rest[w : w+int(n)])
		rest = rest[w+int(n):]
		if !utf8.ValidString(f[i]) {
			return Token{}, fmt.Errorf("%w: field %d not UTF-8", ErrMalformed, i)
		}
	}
	if len(rest) != 0 {
		return Token{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	return Token{Rcpt: f[0], Scope: f[1], Job: f[2]}, nil
}

func sum(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(macContext)
	m.Write(payload)
	return m.Sum(nil)[:macLen]
}
