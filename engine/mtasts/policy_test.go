package mtasts

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	good := "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"
	p, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != Enforce || p.MaxAge != 7*24*time.Hour || len(p.MX) != 2 {
		t.Errorf("Parse = %+v", p)
	}
	cases := []struct{ name, body, err string }{
		{"lf-only", "version: STSv1\nmode: testing\nmx: a.test\nmax_age: 86400\n", ""},
		{"unknown-key", "version: STSv1\nmode: testing\nfoo: bar\nmx: a.test\nmax_age: 1\n", ""},
		{"none-without-mx", "version: STSv1\nmode: none\nmax_age: 1\n", ""},
		{"bad-version", "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", "version"},
		{"bad-mode", "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", "mode"},
		{"no-mx", "version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"},
		{"bad-max-age", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -5\n", "max_age"},
		{"huge-max-age", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 99999999999\n", "max_age"},
		{"no-colon", "version: STSv1\ngarbage\n", "colon"},
		{"too-big", strings.Repeat("x", maxPolicyBytes+1), "64 KiB"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.body))
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.err)
		}
	}
	p, _ = Parse([]byte("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 99999999\n"))
	if p.MaxAge != maxMaxAge {
		t.Errorf("max_age not capped: %v", p.MaxAge)
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{MX: []string{"mail.example.com", "*.example.net"}}
	cases := []struct {
		host string
		want bool
	}{
		{"mail.example.com", true},
		{"MAIL.Example.COM.", true},
		{"other.example.com", false},
		{"mx1.example.net", true},
		{"a.b.example.net", false}, // RFC 8461 §4.1: the wildcard covers one label
		{"example.net", false},
		{".example.net", false},
	}
	for _, c := range cases {
		if got := p.Match(c.host); got != c.want {
			t.Errorf("Match(%q) = %v, want %v", c.host, got, c.want)
		}
	}
}

func TestParseTXT(t *testing.T) {
	cases := []struct {
		txt    string
		id     string
		ok, er bool
	}{
		{"v=STSv1; id=20160831085700Z;", "20160831085700Z", true, false},
		{"v=STSv1;id=abc", "abc", true, false},
		{"v=spf1 -all", "", false, false},
		{"v=STSv1; id=bad-id!", "", true, true},
		{"v=STSv1;", "", true, true},
		{"id=abc; v=STSv1", "", false, false}, // v must come first
	}
	for _, c := range cases {
		id, ok, err := parseTXT(c.txt)
		if id != c.id || ok != c.ok || (err != nil) != c.er {
			t.Errorf("parseTXT(%q) = %q, %v, %v", c.txt, id, ok, err)
		}
	}
}
