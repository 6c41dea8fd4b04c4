package trace

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
)

// Payload layout, version 1 (before the MAC):
//
//	version  1 byte (1)
//	flags    1 byte: bit i set = field i is 6-bit packed (i = 0..5);
//	         bits 6-7: source kind, 0 text, 1 IPv4 (4 bytes), 2 IPv6 (16 bytes)
//	fields   rcpt local part, rcpt domain, job, VMTA, source, message id;
//	         each a uvarint character count and the characters, raw or
//	         packed 6 bits each (MSB first, the last byte zero-padded).
//	         The domain's count is stored plus one, 0 meaning the recipient
//	         had no '@'. An IP source has no count.
//
// Packing the ids and host names (alphabet below) and storing an IP source
// as bytes keeps a typical value near 100 characters instead of 130.

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-"

const (
	nFields     = 6
	srcText     = 0
	srcIPv4     = 1
	srcIPv6     = 2
	srcKindBits = 6
)

// index maps a byte to its position in alphabet, or 0xff.
var index = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

func packable(s string) bool {
	for i := 0; i < len(s); i++ {
		if index[s[i]] == 0xff {
			return false
		}
	}
	return true
}

// appendPayload appends the version byte, the flags and the fields of r.
func appendPayload(b []byte, r Ref) []byte {
	local, domain, hasAt := r.Rcpt, "", false
	if i := strings.LastIndexByte(r.Rcpt, '@'); i >= 0 {
		local, domain, hasAt = r.Rcpt[:i], r.Rcpt[i+1:], true
	}
	fields := [nFields]string{local, domain, r.JobID, r.VMTA, r.Source, r.MsgID}

	srcKind, srcBytes := srcText, []byte(nil)
	if a, err := netip.ParseAddr(r.Source); err == nil && a.String() == r.Source && a.Zone() == "" {
		if a.Is4() {
			srcKind, srcBytes = srcIPv4, a.AsSlice()
		} else {
			srcKind, srcBytes = srcIPv6, a.AsSlice()
		}
	}
	flags := byte(srcKind) << srcKindBits
	for i, f := range fields {
		if packable(f) {
			flags |= 1 << i
		}
	}
	b = append(b, version1, flags)
	for i, f := range fields {
		switch {
		case i == 4 && srcKind != srcText:
			b = append(b, srcBytes...)
			continue
		case i == 1 && !hasAt:
			b = binary.AppendUvarint(b, 0)
			continue
		case i == 1:
			b = binary.AppendUvarint(b, uint64(len(f))+1)
		default:
			b = binary.AppendUvarint(b, uint64(len(f)))
		}
		if flags&(1<<i) != 0 {
			b = pack(b, f)
		} else {
			b = append(b, f...)
		}
	}
	return b
}

// pack appends s, every byte of which is in alphabet, 6 bits per character.
func pack(b []byte, s string) []byte {
	var acc uint32
	n := 0
	for i := 0; i < len(s); i++ {
		acc = acc<<6 | uint32(index[s[i]])
		n += 6
		for n >= 8 {
			n -= 8
			b = append(b, byte(acc>>n))
		}
	}
	if n > 0 {
		b = append(b, byte(acc<<(8-n)))
	}
	return b
}

var errPayload = errors.New("bad payload")

// readPayload decodes what follows the version byte.
func readPayload(p []byte) (Ref, error) {
	if len(p) < 1 {
		return Ref{}, errPayload
	}
	flags := p[0]
	p = p[1:]
	srcKind := int(flags >> srcKindBits)
	if srcKind > srcIPv6 {
		return Ref{}, errPayload
	}
	var fields [nFields]string
	hasAt := true
	for i := range fields {
		if i == 4 && srcKind != srcText {
			size := 4
			if srcKind == srcIPv6 {
				size = 16
			}
			if len(p) < size {
				return Ref{}, errPayload
			}
			a, _ := netip.AddrFromSlice(p[:size])
			fields[i], p = a.String(), p[size:]
			continue
		}
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(MaxLen) {
			return Ref{}, errPayload
		}
		p = p[k:]
		if i == 1 {
			if n == 0 {
				hasAt = false
				continue
			}
			n--
		}
		var s string
		var err error
		if flags&(1<<i) != 0 {
			s, p, err = unpack(p, int(n))
		} else if uint64(len(p)) < n {
			err = errPayload
		} else {
			s, p = string(p[:n]), p[n:]
		}
		if err != nil {
			return Ref{}, err
		}
		fields[i] = s
	}
	if len(p) != 0 {
		return Ref{}, errPayload
	}
	r := Ref{Rcpt: fields[0], JobID: fields[2], VMTA: fields[3], Source: fields[4], MsgID: fields[5]}
	if hasAt {
		r.Rcpt += "@" + fields[1]
	}
	return r, nil
}

// unpack reads n packed characters from p and returns them and the rest.
func unpack(p []byte, n int) (string, []byte, error) {
	size := (6*n + 7) / 8
	if len(p) < size {
		return "", nil, errPayload
	}
	out := make([]byte, 0, n)
	var acc uint32
	bits := 0
	for _, c := range p[:size] {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 6 && len(out) < n {
			bits -= 6
			out = append(out, alphabet[(acc>>bits)&63])
		}
	}
	if acc&(1<<bits-1) != 0 { // padding bits must be zero
		return "", nil, errPayload
	}
	return string(out), p[size:], nil
}
