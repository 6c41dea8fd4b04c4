// Package trace builds and checks the signed trace header that Sluice adds to
// every outgoing message (X-Sluice-Ref by default), so that a complaint or a
// bounce can be tied back to its recipient, job, VMTA, source and message even
// when the ISP redacts the recipient (RFC 6590). The value is a version byte,
// the packed fields and a truncated HMAC-SHA256, in unpadded base64url.
// Nothing here holds state; keys are passed in on every call.
package trace

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// HeaderName is the default name of the trace header.
const HeaderName = "X-Sluice-Ref"

// MaxLen is the longest header value Decode looks at; longer values are
// refused before any decoding work.
const MaxLen = 1024

// MinKeyLen is the shortest secret Keys.Check accepts (128 bits).
const MinKeyLen = 16

const (
	version1 = 1
	macLen   = 12 // bytes of HMAC-SHA256 kept: 96 bits, above RFC 2104 §5's 80-bit floor
)

// macContext separates these MACs from any other use of the same secret
// (unsubscribe tokens, for instance).
var macContext = []byte("sluice-ref\x00")

// Errors returned by Decode.
var (
	// ErrForged means the value does not authenticate under any key: it was
	// tampered with, truncated, signed with an unknown key, or is not ours.
	ErrForged = errors.New("trace: header does not authenticate")
	// ErrMalformed means the value authenticates but cannot be read, e.g. it
	// comes from a newer version of Sluice.
	ErrMalformed = errors.New("trace: authentic header in an unknown format")
)

// Ref is what the trace header carries about one message and recipient.
type Ref struct {
	Rcpt   string // the envelope recipient, as sent
	JobID  string // the job (X-Job / jobId in accounting)
	VMTA   string // the virtual MTA that delivered it
	Source string // the injecting source (an IP address packs smallest)
	MsgID  string // Sluice's message id
}

// Keys are the HMAC secrets. Encode signs with Current; Decode accepts
// Current and every Old key, so a secret can be rotated by moving it to Old
// until mail signed with it has stopped drawing reports.
type Keys struct {
	Current []byte
	Old     [][]byte
}

// Check reports whether the keys are usable: Current and every Old key must
// be at least MinKeyLen bytes. Configuration validation should call it.
func (k Keys) Check() error {
	if len(k.Current) < MinKeyLen {
		return fmt.Errorf("trace: current secret is %d bytes, need at least %d", len(k.Current), MinKeyLen)
	}
	for i, o := range k.Old {
		if len(o) < MinKeyLen {
			return fmt.Errorf("trace: old secret %d is %d bytes, need at least %d", i+1, len(o), MinKeyLen)
		}
	}
	return nil
}

var b64 = base64.RawURLEncoding.Strict() // Strict: the unused bits of the last character must be zero

// Encode returns the header value for r, signed with k.Current. The value is
// base64url without padding, so it never needs folding or encoding in a
// header. Typical values (a 30-character recipient, 10-character job,
// 5-character VMTA, an IPv4 source and an 18-character message id) give
// about 100 characters. k.Current should pass Keys.Check; an empty key still
// yields a value, but Decode never accepts one made with an empty key.
func Encode(r Ref, k Keys) string {
	p := appendPayload(make([]byte, 0, 96), r)
	p = append(p, sum(k.Current, p)...)
	return b64.EncodeToString(p)
}

// Decode checks v against k.Current and then every k.Old key and returns the
// Ref it carries. Each MAC comparison is constant-time and every key is
// tried whatever the outcome, so timing does not tell which key matched.
// Any value that fails authentication, including one that is not base64url
// or is too short or too long, gives ErrForged.
func Decode(v string, k Keys) (Ref, error) {
	v = strings.TrimSpace(v)
	if len(v) > MaxLen {
		return Ref{}, fmt.Errorf("%w: value longer than %d characters", ErrForged, MaxLen)
	}
	// encoding/base64 skips CR and LF inside the input: refuse them, so
	// that only the one canonical spelling of a value authenticates.
	if strings.ContainsAny(v, "\r\n") {
		return Ref{}, fmt.Errorf("%w: not base64url", ErrForged)
	}
	raw, err := b64.DecodeString(v)
	if err != nil {
		return Ref{}, fmt.Errorf("%w: not base64url", ErrForged)
	}
	if len(raw) < 2+macLen {
		return Ref{}, fmt.Errorf("%w: value too short", ErrForged)
	}
	payload, mac := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	ok := 0
	for i := -1; i < len(k.Old); i++ {
		key := k.Current
		if i >= 0 {
			key = k.Old[i]
		}
		if len(key) == 0 { // an empty key is no secret at all
			continue
		}
		ok |= subtle.ConstantTimeCompare(mac, sum(key, payload))
	}
	if ok == 0 {
		return Ref{}, ErrForged
	}
	if payload[0] != version1 {
		return Ref{}, fmt.Errorf("%w: version %d", ErrMalformed, payload[0])
	}
	r, err := readPayload(payload[1:])
	if err != nil {
		return Ref{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return r, nil
}

// sum is the truncated HMAC-SHA256 of payload under key.
func sum(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(macContext)
	m.Write(payload)
	return m.Sum(nil)[:macLen]
}
