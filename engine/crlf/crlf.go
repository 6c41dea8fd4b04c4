// Package crlf normalizes line ends to the CRLF that mail needs.
package crlf

import "bytes"

// Normalize converts the line ends of b (LF, CRLF or lone CR) to CRLF
// (RFC 5322 §2.1). Text that has only CRLF already is returned as it is,
// without a copy; otherwise the result is new.
func Normalize(b []byte) []byte {
	lf := bytes.Count(b, []byte("\n"))
	crlfs := 0
	for rest := b; ; {
		i := bytes.IndexByte(rest, '\r')
		if i < 0 || i+1 == len(rest) || rest[i+1] != '\n' {
			if i < 0 && crlfs == lf {
				return b // every line end is CRLF already
			}
			break
		}
		crlfs++
		rest = rest[i+2:]
	}
	out := make([]byte, 0, len(b)+lf+2)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}
