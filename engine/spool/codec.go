package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Key layout. Bodies live under their own prefix so that Scan, which walks
// only "m/", never reads a body block from disk.
//
//	b/<id>              body bytes, as received
//	m/<id>/e            envelope record
//	m/<id>/r/<idx>      recipient record; idx is a 4-byte big-endian uint32
//
// IDs are [0-9A-Za-z]+; '/' sorts below every ID byte, so keys of one message
// are contiguous and messages come out in ID order.
const (
	bodyPrefix = "b/"
	metaPrefix = "m/"
	maxIDLen   = 64
	maxRcpts   = 1 << 20 // far above any SMTP RCPT limit; bounds a corrupt count
)

func bodyKey(id string) []byte { return append([]byte(bodyPrefix), id...) }

func envKey(id string) []byte {
	k := make([]byte, 0, len(metaPrefix)+len(id)+2)
	return append(append(append(k, metaPrefix...), id...), "/e"...)
}

func rcptKey(id string, idx int) []byte {
	k := make([]byte, 0, len(metaPrefix)+len(id)+7)
	k = append(append(append(k, metaPrefix...), id...), "/r/"...)
	return binary.BigEndian.AppendUint32(k, uint32(idx))
}

// validID reports whether id can be used as a key component.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isIDByte(id[i]) {
			return false
		}
	}
	return true
}

func isIDByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// metaKind is what a key under "m/" names.
type metaKind uint8

const (
	kindEnv metaKind = iota + 1
	kindRcpt
)

// parseMetaKey splits a key under "m/" into its message ID, kind and, for a
// recipient, its index. Malformed keys return an error.
func parseMetaKey(k []byte) (id string, kind metaKind, idx int, err error) {
	if len(k) < len(metaPrefix) || string(k[:len(metaPrefix)]) != metaPrefix {
		return "", 0, 0, fmt.Errorf("key %q: not a metadata key", k)
	}
	rest := k[len(metaPrefix):]
	n := 0
	for n < len(rest) && rest[n] != '/' {
		n++
	}
	if n == 0 || n > maxIDLen || n == len(rest) {
		return "", 0, 0, fmt.Errorf("key %q: bad message id", k)
	}
	id = string(rest[:n])
	if !validID(id) {
		return "", 0, 0, fmt.Errorf("key %q: bad message id", k)
	}
	switch suffix := rest[n:]; {
	case string(suffix) == "/e":
		return id, kindEnv, 0, nil
	case len(suffix) == 7 && string(suffix[:3]) == "/r/":
		i := binary.BigEndian.Uint32(suffix[3:])
		if i >= maxRcpts {
			return id, 0, 0, fmt.Errorf("key %q: recipient index %d out of range", k, i)
		}
		return id, kindRcpt, int(i), nil
	default:
		return id, 0, 0, fmt.Errorf("key %q: unknown record", k)
	}
}

// Record versions. A new layout gets a new version byte; decoders reject
// versions they do not know instead of guessing.
const (
	envVersion1  = 1
	rcptVersion1 = 1
)

// Envelope flag bits.
const (
	flagSMTPUTF8 = 1 << iota
	flagBody8Bit
	flagBounceDSN
	flagRequireTLS
	flagsKnown = flagSMTPUTF8 | flagBody8Bit | flagBounceDSN | flagRequireTLS
)

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("corrupt record")

// encodeEnvelope encodes e together with the message's recipient count, which
// lets Scan notice a missing recipient record.
func encodeEnvelope(e *Envelope, nrcpt int) []byte {
	b := make([]byte, 0, 64+len(e.From)+len(e.EnvID)+len(e.Ret)+len(e.SourceIP)+len(e.AuthUser)+len(e.JobID)+len(e.VMTA))
	b = append(b, envVersion1)
	var flags byte
	if e.SMTPUTF8 {
		flags |= flagSMTPUTF8
	}
	if e.Body8Bit {
		flags |= flagBody8Bit
	}
	if e.BounceDSN {
		flags |= flagBounceDSN
	}
	if e.RequireTLS {
		flags |= flagRequireTLS
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(nrcpt))
	b = appendString(b, e.From)
	b = appendString(b, e.EnvID)
	b = appendString(b, e.Ret)
	b = appendTime(b, e.Received)
	b = appendString(b, e.SourceIP)
	b = appendString(b, e.AuthUser)
	b = appendString(b, e.JobID)
	b = appendString(b, e.VMTA)
	b = binary.AppendVarint(b, e.Size)
	return b
}

// decodeEnvelope is the inverse of encodeEnvelope. It never panics; any
// malformed input yields an error wrapping errCorrupt.
func decodeEnvelope(p []byte) (Envelope, int, error) {
	d := decoder{p: p}
	var e Envelope
	if v := d.byte(); d.err == nil && v != envVersion1 {
		return e, 0, fmt.Errorf("%w: envelope version %d", errCorrupt, v)
	}
	flags := d.byte()
	if d.err == nil && flags&^flagsKnown != 0 {
		return e, 0, fmt.Errorf("%w: envelope flags %#x", errCorrupt, flags)
	}
	e.SMTPUTF8 = flags&flagSMTPUTF8 != 0
	e.Body8Bit = flags&flagBody8Bit != 0
	e.BounceDSN = flags&flagBounceDSN != 0
	e.RequireTLS = flags&flagRequireTLS != 0
	n := d.uvarint()
	if d.err == nil && n > maxRcpts {
		return e, 0, fmt.Errorf("%w: recipient count %d", errCorrupt, n)
	}
	e.From = d.string()
	e.EnvID = d.string()
	e.Ret = d.string()
	e.Received = d.time()
	e.SourceIP = d.string()
	e.AuthUser = d.string()
	e.JobID = d.string()
	e.VMTA = d.string()
	e.Size = d.varint()
	if err := d.finish("envelope"); err != nil {
		return Envelope{}, 0, err
	}
	return e, int(n), nil
}

func encodeRcpt(r *Rcpt) []byte {
	b := make([]byte, 0, 48+len(r.Addr)+len(r.ORcpt)+len(r.Notify)+len(r.LastReply))
	b = append(b, rcptVersion1, byte(r.State))
	b = appendString(b, r.Addr)
	b = appendString(b, r.ORcpt)
	b = appendString(b, r.Notify)
	b = binary.AppendUvarint(b, uint64(max(r.Attempts, 0)))
	b = appendTime(b, r.FirstAttempt)
	b = appendTime(b, r.NextAttempt)
	b = appendString(b, r.LastReply)
	return b
}

// decodeRcpt is the inverse of encodeRcpt; it never panics.
func decodeRcpt(p []byte) (Rcpt, error) {
	d := decoder{p: p}
	var r Rcpt
	if v := d.byte(); d.err == nil && v != rcptVersion1 {
		return r, fmt.Errorf("%w: recipient version %d", errCorrupt, v)
	}
	r.State = State(d.byte())
	if d.err == nil && !r.State.valid() {
		return Rcpt{}, fmt.Errorf("%w: recipient state %d", errCorrupt, r.State)
	}
	r.Addr = d.string()
	r.ORcpt = d.string()
	r.Notify = d.string()
	a := d.uvarint()
	if d.err == nil && a > math.MaxInt32 {
		return Rcpt{}, fmt.Errorf("%w: attempts %d", errCorrupt, a)
	}
	r.Attempts = int(a)
	r.FirstAttempt = d.time()
	r.NextAttempt = d.time()
	r.LastReply = d.string()
	if err := d.finish("recipient"); err != nil {
		return Rcpt{}, err
	}
	return r, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendTime stores t as Unix seconds and nanoseconds; the zero Time is
// stored as a lone 0 so it decodes back to the zero Time.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// decoder reads a record field by field. The first error sticks and every
// later read returns a zero value, so callers check d.err once at the end.
type decoder struct {
	p   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or bad %s", errCorrupt, what)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.p) == 0 {
		d.fail("byte")
		return 0
	}
	c := d.p[0]
	d.p = d.p[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.p)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.p)) { // never allocate more than the record holds
		d.fail("string length")
		return ""
	}
	s := string(d.p[:n])
	d.p = d.p[n:]
	return s
}

func (d *decoder) time() time.Time {
	switch d.byte() {
	case 0:
		return time.Time{}
	case 1:
	default:
		d.fail("time marker")
		return time.Time{}
	}
	sec := d.varint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.fail("time nanoseconds")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec))
}

// finish reports the sticky error, or an error if bytes are left over.
func (d *decoder) finish(what string) error {
	if d.err != nil {
		return fmt.Errorf("%s: %w", what, d.err)
	}
	if len(d.p) != 0 {
		return fmt.Errorf("%w: %s: %d trailing bytes", errCorrupt, what, len(d.p))
	}
	return nil
}
