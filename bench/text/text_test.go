package text

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestProseLines(t *testing.T) {
	p := Prose(rand.New(rand.NewPCG(1, 2)), 20000)
	if len(p) < 20000 || !strings.HasSuffix(p, "\r\n") {
		t.Fatalf("%d bytes, want at least 20000 ending in CRLF", len(p))
	}
	for i, l := range strings.Split(strings.TrimSuffix(p, "\r\n"), "\r\n") {
		if len(l) == 0 || len(l) > 76 || strings.ContainsAny(l, "\r\n") {
			t.Fatalf("line %d: %q", i+1, l)
		}
	}
	if q := Prose(rand.New(rand.NewPCG(1, 2)), 20000); q != p {
		t.Fatal("the same seed gave other prose")
	}
}

func TestTemplate(t *testing.T) {
	text, html := Template()
	if n := len(text) + len(html); n < 9<<10 || n > 11<<10 {
		t.Fatalf("template of %d bytes, want about 10 KB", n)
	}
	for _, f := range []string{"{{.name}}", "{{.code}}"} {
		if !strings.Contains(text, f) || !strings.Contains(html, f) {
			t.Fatalf("%s missing from a part", f)
		}
	}
}
