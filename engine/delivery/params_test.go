package delivery

import (
	"bufio"
	"bytes"
	"testing"
)

func TestWriteBody(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ".\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a", "a\r\n.\r\n"},
		{"a\nb", "a\r\nb\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{"x\r\n.y\r\n..\r\n", "x\r\n..y\r\n...\r\n.\r\n"},
		{"\n\n", "\r\n\r\n.\r\n"},
		{"a\r\r\n", "a\r\r\n.\r\n"},
		{"a\rb\r\n", "a\rb\r\n.\r\n"},
		{"end\r", "end\r\n.\r\n"},
	}
	for _, tc := range cases {
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := writeBody(w, []byte(tc.in)); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if buf.String() != tc.want {
			t.Errorf("writeBody(%q) = %q, want %q", tc.in, buf.String(), tc.want)
		}
	}
}

func TestParams(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc", "abc"},
		{"a+b=c d", "a+2Bb+3Dc+20d"},
		{"é", "+C3+A9"},
	} {
		if got := xtext(tc.in); got != tc.want {
			t.Errorf("xtext(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		utf8 bool
		want string
	}{
		{"a@b.test", false, "rfc822;a@b.test"},
		{"RFC822;a+x@b.test", false, "rfc822;a+2Bx@b.test"},
		{"utf-8;jö@b.test", false, `utf-8;j\x{F6}@b.test`},
		{"jö@b.test", true, "utf-8;jö@b.test"},
		{"utf-8;a=b\\c@d", true, `utf-8;a\x{3D}b\x{5C}c@d`},
		{"rfc822;", false, ""},
		{"x400;c=us", false, "x400;c+3Dus"},
		{"weird type;a@b", false, "rfc822;weird+20type;a@b"},
	} {
		if got := orcptParam(tc.in, tc.utf8); got != tc.want {
			t.Errorf("orcptParam(%q, %v) = %q, want %q", tc.in, tc.utf8, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"never", "NEVER"},
		{"SUCCESS,FAILURE,DELAY", "SUCCESS,FAILURE,DELAY"},
		{"failure, delay", "FAILURE,DELAY"},
		{"NEVER,FAILURE", ""},
		{"FAILURE,FAILURE", ""},
		{"", ""},
		{"SOMETIMES", ""},
	} {
		if got := notifyParam(tc.in); got != tc.want {
			t.Errorf("notifyParam(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"id-1", "id-1"},
		{"a b", "a+20b"},
		{"é", ""},
		{string(bytes.Repeat([]byte("x"), 101)), ""},
	} {
		if got := envidParam(tc.in); got != tc.want {
			t.Errorf("envidParam(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAddressChecks(t *testing.T) {
	for _, tc := range []struct {
		in    string
		valid bool
	}{
		{"a@b.test", true},
		{"", true},
		{"jö@b.test", true},
		{`"john doe"@b.test`, true},
		{"a@b>\r\nRSET", false},
		{"a\n@b", false},
		{"<a@b>", false},
		{"a\x7f@b", false},
		{"a\xff@b", false},
	} {
		if got := validPath(tc.in); got != tc.valid {
			t.Errorf("validPath(%q) = %v", tc.in, got)
		}
	}
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"Subject: x\r\n\r\nbody \xc3\xa9\r\n", false},
		{"Subject: \xc3\xa9\r\n\r\nbody\r\n", true},
		{"Subject: x\n\nbody \xc3\xa9\n", false},
		{"Subject: \xc3\xa9", true},
	} {
		if got := headerIs8Bit([]byte(tc.in)); got != tc.want {
			t.Errorf("headerIs8Bit(%q) = %v", tc.in, got)
		}
	}
}
