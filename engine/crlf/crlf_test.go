package crlf

import "testing"

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""}, {"a", "a"}, {"a\r\nb\r\n", "a\r\nb\r\n"}, {"a\nb", "a\r\nb"}, {"a\rb", "a\r\nb"},
		{"a\r", "a\r\n"}, {"x\r\n\ny", "x\r\n\r\ny"}, {"\r\r\n", "\r\n\r\n"},
	}
	for _, c := range cases {
		in := []byte(c.in)
		if got := Normalize(in); c.in == c.want && len(in) > 0 && &got[0] != &in[0] {
			t.Errorf("Normalize(%q) copied text that was CRLF already", c.in)
		}
		if got := string(Normalize([]byte(c.in))); got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
