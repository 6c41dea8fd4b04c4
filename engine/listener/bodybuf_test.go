package listener

import (
	"strings"
	"testing"
)

// validRef is RFC 5321 §2.3.8 and §4.5.3.1.6 written the slow way: no NUL,
// CR only in CRLF, LF only in CRLF, no line over 998 octets.
func validRef(b []byte) bool {
	for i, lineLen := 0, 0; i < len(b); i++ {
		switch {
		case b[i] == 0:
			return false
		case b[i] == '\r' && (i+1 == len(b) || b[i+1] != '\n'):
			return false
		case b[i] == '\n' && (i == 0 || b[i-1] != '\r'):
			return false
		case b[i] == '\n':
			lineLen = 0
		case b[i] != '\r':
			if lineLen++; lineLen > maxLineLength {
				return false
			}
		}
	}
	return true
}

func FuzzBodyClean(f *testing.F) {
	for _, s := range []string{"", "a\r\n", "a\n", "a\r", "\r\r\n", "a\x00\r\n", strings.Repeat("x", 998) + "\r\n",
		strings.Repeat("x", 999) + "\r\n", strings.Repeat("y", 999), "ok\r\nbad\rx\r\n", "\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := validRef(b)
		if got := bodyClean(b); got != want {
			t.Fatalf("bodyClean(%q) = %v, want %v", b, got, want)
		}
		if got := checkBody(b) == nil; got != want {
			t.Fatalf("checkBody(%q) ok = %v, want %v", b, got, want)
		}
	})
}
