package reply

import (
	"errors"
	"fmt"
	"testing"
)

func TestParseStatus(t *testing.T) {
	cases := []struct {
		in   string
		want Status
		ok   bool
	}{
		{"5.1.1", Status{5, 1, 1}, true},
		{"4.7.650", Status{4, 7, 650}, true},
		{"2.0.0", Status{2, 0, 0}, true},
		{"3.1.1", Status{}, false},
		{"5.1", Status{}, false},
		{"5.a.1", Status{}, false},
		{"5.1.1234", Status{}, false},
		{"", Status{}, false},
	}
	for _, c := range cases {
		got, ok := ParseStatus(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseStatus(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		code       int
		text       string
		wantStatus string
		wantText   string
	}{
		{550, "5.1.1 user unknown", "5.1.1", "user unknown"},
		{451, "try later", "", "try later"},
		{451, "5.1.1 class mismatch", "", "5.1.1 class mismatch"},
		{421, "4.7.0 [TSS04] deferred\n4.7.0 more", "4.7.0", "[TSS04] deferred\n4.7.0 more"},
	}
	for _, c := range cases {
		e := Parse(c.code, c.text)
		if e.Status.String() != c.wantStatus || e.Text != c.wantText {
			t.Errorf("Parse(%d, %q) = %q %q; want %q %q", c.code, c.text, e.Status, e.Text, c.wantStatus, c.wantText)
		}
	}
}

func TestFromAndTemporary(t *testing.T) {
	cause := errors.New("disk on fire")
	r := From(fmt.Errorf("put: %w", cause))
	if r.Code != 451 || r.Status != (Status{4, 3, 0}) || !r.Temporary() || !errors.Is(r, cause) {
		t.Fatalf("From(plain) = %+v", r)
	}
	orig := New(550, Status{5, 7, 1}, "relaying denied")
	if got := From(fmt.Errorf("wrapped: %w", orig)); got != orig || !got.Permanent() || got.Temporary() {
		t.Fatalf("From(wrapped reply) = %+v", got)
	}
	if From(nil) != nil {
		t.Fatal("From(nil) != nil")
	}
	if got := orig.Error(); got != "550 5.7.1 relaying denied" {
		t.Fatalf("Error() = %q", got)
	}
}
