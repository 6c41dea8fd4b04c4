// Package reply holds the one error type that carries an SMTP reply: a
// reply code, an RFC 3463 enhanced status, text that is safe to show a peer,
// and the cause, which is logged but never sent. It is a leaf: it imports
// nothing of Sluice's, so every layer may use it.
package reply

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.uber.org/zap/zapcore"
)

// Status is an RFC 3463 enhanced status code, class.subject.detail.
type Status [3]int

// String renders the status as "5.1.1"; the zero Status renders as "".
func (s Status) String() string {
	if s == (Status{}) {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", s[0], s[1], s[2])
}

// IsZero reports whether no status is set.
func (s Status) IsZero() bool { return s == Status{} }

// ParseStatus parses "X.Y.Z" (RFC 3463 §2: class 2, 4 or 5; subject and
// detail of up to three digits).
func ParseStatus(s string) (Status, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Status{}, false
	}
	var st Status
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 {
			return Status{}, false
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Status{}, false
		}
		st[i] = n
	}
	if st[0] != 2 && st[0] != 4 && st[0] != 5 {
		return Status{}, false
	}
	return st, true
}

// Error is an SMTP reply used as a Go error. Code's first digit decides
// whether it is temporary (4) or permanent (5).
type Error struct {
	Code   int    // 421, 451, 550 …
	Status Status // {5, 1, 1}; its class matches Code's first digit
	Text   string // safe to show the peer: no paths, keys or internal hostnames
	Err    error  // the cause; logged, never sent
}

// New returns an Error with no cause.
func New(code int, st Status, text string) *Error {
	return &Error{Code: code, Status: st, Text: text}
}

// Wrap returns an Error whose cause is err.
func Wrap(code int, st Status, text string, err error) *Error {
	return &Error{Code: code, Status: st, Text: text, Err: err}
}

// Error renders "550 5.1.1 text" (the cause is not included).
func (e *Error) Error() string {
	if e.Status.IsZero() {
		return fmt.Sprintf("%d %s", e.Code, e.Text)
	}
	return fmt.Sprintf("%d %s %s", e.Code, e.Status, e.Text)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the reply is a transient (4xx) one. Anything that
// is not 5xx counts as temporary: unknown means retry.
func (e *Error) Temporary() bool { return e.Code/100 != 5 }

// Permanent reports whether the reply is a 5xx.
func (e *Error) Permanent() bool { return e.Code/100 == 5 }

// MarshalLogObject implements zapcore.ObjectMarshaler.
func (e *Error) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddInt("smtp_code", e.Code)
	if !e.Status.IsZero() {
		enc.AddString("dsn_status", e.Status.String())
	}
	enc.AddString("smtp_text", e.Text)
	if e.Err != nil {
		enc.AddString("cause", e.Err.Error())
	}
	return nil
}

// From returns err as an *Error. An error that carries none becomes a
// temporary local error (451 4.3.0) that keeps err as its cause, so that
// unknown failures are retried and never leak their text to a peer.
func From(err error) *Error {
	if err == nil {
		return nil
	}
	var r *Error
	if errors.As(err, &r) {
		return r
	}
	return &Error{Code: 451, Status: Status{4, 3, 0}, Text: "local error, try again later", Err: err}
}

// Parse reads one SMTP reply as a peer sent it, "550 5.1.1 text" or "550
// text" (multi-line replies joined with newlines, each line with its code),
// and returns it as an Error. The enhanced status is taken from the first
// line when present (RFC 2034 §3).
func Parse(code int, text string) *Error {
	e := &Error{Code: code, Text: text}
	first := text
	if i := strings.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	if f, rest, _ := strings.Cut(first, " "); f != "" {
		if st, ok := ParseStatus(f); ok && st[0] == code/100 {
			e.Status = st
			e.Text = strings.TrimSpace(rest) + text[len(first):]
		}
	}
	return e
}
