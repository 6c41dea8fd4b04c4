package listener

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzCheckAddress(f *testing.F) {
	for _, s := range []string{
		"user@example.test", "", "a@b", "a@[127.0.0.1]", "a@[IPv6:::1]", `"quoted local"@example.test`,
		"user%other@example.test", "@a:b@c", "a@b@c", "a@b.", "a@-b.test", "a@b..test", "a\x00@b", "Ä@bücher.test",
		strings.Repeat("x", 65) + "@a.test", "a@" + strings.Repeat("l.", 130) + "test",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, addr string, sender bool) {
		err := checkAddress(addr, sender)
		if err != nil {
			return
		}
		if addr == "" {
			if !sender {
				t.Fatal("empty recipient accepted")
			}
			return
		}
		if len(addr) > 254 || !utf8.ValidString(addr) {
			t.Fatalf("accepted %q: too long or invalid UTF-8", addr)
		}
		at := strings.LastIndexByte(addr, '@')
		if at <= 0 || at == len(addr)-1 || at > 64 {
			t.Fatalf("accepted %q: not local@domain within the limits", addr)
		}
		for _, r := range addr {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("accepted %q with a control character", addr)
			}
		}
	})
}

func FuzzHeader(f *testing.F) {
	for _, s := range []string{
		"Subject: hi\r\nX-Job: spring\r\n\r\nbody\r\n",
		"X-Job: a\r\n b\r\nX-Job: second\r\nX-Virtual-MTA: v1\r\n\r\n",
		"no header line\r\nSubject: x\r\n\r\n",
		"Subject: folded\r\n\tcontinued\r\nFrom: <a@b>\r\n",
		"x-job:\r\n\r\n", ": empty name\r\n", " leading space\r\n", "Subject: bare\nlf\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		h := splitHeader(raw)
		var b bytes.Buffer
		h.writeTo(&b)
		if bytes.HasSuffix(raw, []byte("\r\n")) && !bytes.Equal(b.Bytes(), raw) {
			t.Fatalf("split and rewritten:\n%q\nwant\n%q", b.Bytes(), raw)
		}
		v, ok := h.take("X-Job")
		if ok && strings.ContainsAny(v, "\r\n") {
			t.Fatalf("X-Job value %q keeps a line break", v)
		}
		if h.has("x-job") {
			t.Fatal("X-Job still present after take")
		}
		b.Reset()
		h.writeTo(&b) // must not panic
	})
}

func FuzzCheckBody(f *testing.F) {
	for _, s := range []string{
		"a\r\nb\r\n", "bare\nlf\r\n", "bare\rcr\r\n", "nul\x00\r\n", strings.Repeat("x", 998) + "\r\n",
		strings.Repeat("x", 999) + "\r\n", "", "\r\n", "no final crlf",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkBody(b) != nil {
			return
		}
		if bytes.IndexByte(b, 0) >= 0 {
			t.Fatal("NUL accepted")
		}
		for i, line := range bytes.Split(b, []byte("\r\n")) {
			if bytes.ContainsAny(line, "\r\n") {
				t.Fatalf("line %d %q: bare CR or LF accepted", i, line)
			}
			if len(line) > maxLineLength {
				t.Fatalf("line %d of %d octets accepted", i, len(line))
			}
		}
	})
}
