package mailmsg

import (
	"encoding/base64"
	"strings"
)

// decodeCTE undoes a Content-Transfer-Encoding (RFC 2045 §6). Unknown
// encodings and identity encodings return b as it is; so does base64 that
// decodes to nothing.
func decodeCTE(b []byte, cte string) []byte {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		if d := decodeBase64(b); len(d) > 0 {
			return d
		}
	case "quoted-printable":
		return decodeQP(b)
	}
	return b
}

// decodeBase64 decodes leniently: characters outside the alphabet (line
// breaks, stray spaces) are skipped, padding is optional, and decoding stops
// at the first '=' or at trailing garbage that cannot form a byte.
func decodeBase64(b []byte) []byte {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		case c == '=':
			goto done
		}
	}
done:
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, _ := base64.RawStdEncoding.Decode(out, clean) // clean input: no error but a short final quantum
	return out[:n]
}

// decodeQP decodes quoted-printable (RFC 2045 §6.7) leniently: "=XX" with
// hex digits of either case becomes the byte, "=" at the end of a line (with
// trailing white space) is a soft line break, and any other "=" is kept.
func decodeQP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		j := i + 1
		for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
			j++
		}
		if j == len(b) || b[j] == '\n' { // soft line break
			i = j
			continue
		}
		if i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]) {
			out = append(out, unhex(b[i+1])<<4|unhex(b[i+2]))
			i += 2
			continue
		}
		out = append(out, c)
	}
	return out
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
