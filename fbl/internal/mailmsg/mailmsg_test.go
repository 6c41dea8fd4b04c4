package mailmsg

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestNormalize(t *testing.T) {
	cases := map[string]string{
		"a\r\nb\r\n": "a\nb\n",
		"a\rb\r":     "a\nb\n",
		"a\nb":       "a\nb",
		"a\r\r\nb":   "a\n\nb",
		"\r":         "\n",
		"":           "",
	}
	for in, want := range cases {
		if got := string(Normalize([]byte(in))); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitHeader(t *testing.T) {
	cases := []struct {
		in     string
		fields []Field
		body   string
	}{
		{"A: 1\nB: 2\n\nbody\n", []Field{{"A", "1"}, {"B", "2"}}, "body\n"},
		{"A: 1\n  continued\n\tagain\n\nx", []Field{{"A", "1 continued again"}}, "x"},
		{"\nno header", nil, "no header"},
		{"plain text first\nA: b\n", nil, "plain text first\nA: b\n"},
		{"A: 1\nnot a field\nmore", []Field{{"A", "1"}}, "not a field\nmore"},
		{"Subject : spaced\n\n", []Field{{"Subject", "spaced"}}, ""},
		{"A: 1", []Field{{"A", "1"}}, ""},
		{" leading continuation\n", nil, " leading continuation\n"},
		{"A:\n \n\nb", []Field{{"A", ""}}, "\nb"}, // a white-space-only line ends the header
	}
	for _, c := range cases {
		h, body := SplitHeader([]byte(c.in))
		if len(h) != len(c.fields) {
			t.Errorf("SplitHeader(%q) fields = %q, want %q", c.in, h, c.fields)
			continue
		}
		for i := range h {
			if h[i] != c.fields[i] {
				t.Errorf("SplitHeader(%q) field %d = %q, want %q", c.in, i, h[i], c.fields[i])
			}
		}
		if string(body) != c.body {
			t.Errorf("SplitHeader(%q) body = %q, want %q", c.in, body, c.body)
		}
	}
}

func TestSplitHeaderBounds(t *testing.T) {
	var b bytes.Buffer
	for i := 0; i < MaxFields+50; i++ {
		b.WriteString("X-F: v\n continuation\n")
	}
	b.WriteString("Last: 1\n")
	for i := 0; i < 100000; i++ {
		b.WriteString(" more\n")
	}
	b.WriteString("\nbody")
	h, body := SplitHeader(b.Bytes())
	if len(h) != MaxFields {
		t.Errorf("kept %d fields, want %d", len(h), MaxFields)
	}
	for _, f := range h {
		if len(f.Value) > MaxFieldLen+100 {
			t.Errorf("field value of %d bytes, want at most about %d", len(f.Value), MaxFieldLen)
		}
	}
	if string(body) != "body" {
		t.Errorf("body = %q", body)
	}
}

func TestHeaderAccess(t *testing.T) {
	h := Header{{"To", "a@b.test"}, {"x-job", "j1"}, {"TO", "c@d.test"}}
	if h.Get("to") != "a@b.test" || h.Get("X-Job") != "j1" || h.Get("nope") != "" {
		t.Error("Get is not case-insensitive or returns the wrong field")
	}
	if v := h.Values("To"); len(v) != 2 || v[1] != "c@d.test" {
		t.Errorf("Values = %q", v)
	}
	if !h.Has("X-JOB") || h.Has("Cc") {
		t.Error("Has")
	}
}

func TestParseContentType(t *testing.T) {
	cases := []struct {
		in, mt string
		params map[string]string
	}{
		{`multipart/report; report-type=feedback-report; boundary="b1"`, "multipart/report", map[string]string{"report-type": "feedback-report", "boundary": "b1"}},
		{"Multipart/Report;\n report-type=delivery-status; boundary=\"x;y\"", "multipart/report", map[string]string{"boundary": "x;y"}},
		{"text/plain;", "text/plain", nil},
		{"text/plain; charset=\"utf-8\"; ; junk", "text/plain", map[string]string{"charset": "utf-8"}},
		{"multipart/report; boundary=47ddcc38==", "multipart/report", map[string]string{"boundary": "47ddcc38=="}},
		{"", "text/plain", nil},
		{"garbage", "text/plain", nil},
		{`multipart/mixed; boundary="unterminated`, "multipart/mixed", map[string]string{"boundary": "unterminated"}},
		{"message/rfc822 (comment)", "message/rfc822", nil},
	}
	for _, c := range cases {
		mt, p := ParseContentType(c.in, "text/plain")
		if mt != c.mt {
			t.Errorf("ParseContentType(%q) type = %q, want %q", c.in, mt, c.mt)
		}
		for k, v := range c.params {
			if p[k] != v {
				t.Errorf("ParseContentType(%q)[%q] = %q, want %q", c.in, k, p[k], v)
			}
		}
	}
}

// tree renders the structure Parse built, for comparisons.
func tree(p *Part) string {
	var b strings.Builder
	var walk func(p *Part, depth int)
	walk = func(p *Part, depth int) {
		b.WriteString(strings.Repeat(" ", depth) + p.MediaType)
		if p.Malformed {
			b.WriteString("!")
		}
		if len(p.Parts) == 0 && p.Message == nil {
			b.WriteString("=" + strings.TrimSpace(string(p.Body)))
		}
		b.WriteString("\n")
		for _, c := range p.Parts {
			walk(c, depth+1)
		}
		if p.Message != nil {
			walk(p.Message, depth+1)
		}
	}
	walk(p, 0)
	return b.String()
}

func TestParseStructure(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"simple", "Content-Type: multipart/mixed; boundary=b\n\npre\n--b\n\none\n--b\nContent-Type: text/html\n\n<p>two</p>\n--b--\nepilogue\n",
			"multipart/mixed\n text/plain=one\n text/html=<p>two</p>\n"},
		{"crlf", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n",
			"multipart/mixed\n text/plain=one\n"},
		{"no close delimiter", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo",
			"multipart/mixed\n text/plain=one\n text/plain=two\n"},
		{"indented delimiter", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n --b\n\ntwo\n--b--",
			"multipart/mixed\n text/plain=one\n text/plain=two\n"},
		{"boundary mismatch", "Content-Type: multipart/report; boundary=declared\n\n--actual.1/x\nContent-Type: text/plain\n\none\n--actual.1/x\nContent-Type: message/delivery-status\n\nStatus: 5.1.1\n--actual.1/x--\n",
			"multipart/report\n text/plain=one\n message/delivery-status=Status: 5.1.1\n"},
		{"no delimiters", "Content-Type: multipart/report; boundary=b\n\njust text\n",
			"text/plain!=just text\n"},
		{"embedded", "Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nFrom Someone Mon Jan  1 00:00:00 2024\nSubject: s\n\nbody\n--b\nContent-Type: text/rfc822-headers\n\nTo: a@b.test\n--b--",
			"multipart/report\n message/rfc822\n  text/plain=body\n text/rfc822-headers\n  text/plain=\n"},
		{"digest default", "Content-Type: multipart/digest; boundary=b\n\n--b\n\nSubject: inner\n\nx\n--b--",
			"multipart/digest\n message/rfc822\n  text/plain=x\n"},
		{"qp and base64", "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: quoted-printable\n\na=3Db soft=\nbreak =ZZ\n--b\nContent-Transfer-Encoding: BASE64\n\naGVs\nbG8=\n--b--",
			"multipart/mixed\n text/plain=a=b softbreak =ZZ\n text/plain=hello\n"},
		{"mbox from line", "From MAILER-DAEMON Sat Oct  4 08:00:09 2025\nSubject: x\n\nbody", "text/plain=body\n"},
	}
	for _, c := range cases {
		if got := tree(Parse([]byte(c.in))); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestParseBounds(t *testing.T) {
	// Nesting deeper than MaxDepth stops being parsed.
	var b strings.Builder
	for i := 0; i < 50; i++ {
		b.WriteString("Content-Type: multipart/mixed; boundary=b" + strings.Repeat("x", i) + "\n\n--b" + strings.Repeat("x", i) + "\n")
	}
	depth := 0
	for p := Parse([]byte(b.String())); p != nil && len(p.Parts) > 0; p = p.Parts[0] {
		depth++
	}
	if depth > MaxDepth {
		t.Errorf("depth %d, want at most %d", depth, MaxDepth)
	}
	// Many parts are capped.
	b.Reset()
	b.WriteString("Content-Type: multipart/mixed; boundary=b\n\n")
	for i := 0; i < 10*MaxParts; i++ {
		b.WriteString("--b\n\npart\n")
	}
	n := 0
	Parse([]byte(b.String())).Walk(func(*Part) bool { n++; return true })
	if n > MaxParts+1 {
		t.Errorf("%d parts, want at most %d", n, MaxParts+1)
	}
}

func TestDecodeBase64Lenient(t *testing.T) {
	cases := map[string]string{
		"aGVsbG8=":       "hello",
		"aGVsbG8":        "hello",
		"aGVs\n bG8=\n":  "hello",
		"aGVsbG8=garbag": "hello",
		"a":              "a", // undecodable: kept as it was
	}
	for in, want := range cases {
		if got := string(decodeCTE([]byte(in), "base64")); got != want {
			t.Errorf("base64 %q = %q, want %q", in, got, want)
		}
	}
}

func TestCleanAddress(t *testing.T) {
	cases := map[string]string{
		"rfc822; user@example.com":             "user@example.com",
		"RFC822;<User@Example.COM>":            "User@Example.COM",
		"  <a@b.example>  ":                    "a@b.example",
		"mailto:a@b.example":                   "a@b.example",
		"Name <a@b.example>":                   "a@b.example",
		`"neko....nyaan...."@libsisimai.org`:   `"neko....nyaan...."@libsisimai.org`,
		"rfc822;neko....nyaan....@example.org": "neko....nyaan....@example.org",
		"@relay.example:user@host.example":     "user@host.example",
		"@smtp.example.net:kijitora@server":    "",
		"a@b.example.":                         "a@b.example",
		"user@[192.0.2.1]":                     "user@[192.0.2.1]",
		"x-unix; |/usr/bin/prog":               "",
		"rfc822;|/bin/x a@b.example /home":     "",
		"<Undisclosed Recipients>":             "",
		"undisclosed":                          "",
		"redacted@":                            "",
		"@example.com":                         "",
		"a b@example.com":                      "",
		"user@localhost":                       "",
		"utf-8; üser@bücher.example":           "üser@bücher.example",
		"":                                     "",
	}
	for in, want := range cases {
		if got := CleanAddress(in); got != want {
			t.Errorf("CleanAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAddressLists(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"a@b.example, Name <c@d.example>", []string{"a@b.example", "c@d.example"}},
		{"<Undisclosed Recipients>", nil},
		{`"undisclosed"`, nil},
		{"undisclosed-recipients:;", nil},
		{"a@b.example, A@B.EXAMPLE", []string{"a@b.example"}},
		{"broken <a@b.example", []string{"a@b.example"}},
	}
	for _, c := range cases {
		got := AddressList(c.in)
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("AddressList(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	got := FindAddresses("RCPT TO:<x@y.example>: host mx [192.0.2.1] said 550 <x@y.example> mailto:z@w.example", 5)
	if strings.Join(got, ",") != "x@y.example,z@w.example" {
		t.Errorf("FindAddresses = %q", got)
	}
}

func TestParseDate(t *testing.T) {
	cases := map[string]string{
		"Thu, 29 Apr 2015 23:34:45 +0000":                "2015-04-29T23:34:45Z",
		"Thu, 29 Apr 2015 23:34:45 +0000 (UTC)":          "2015-04-29T23:34:45Z",
		"Thu, 29 Apr 2013 23:45:50 PST":                  "2013-04-29T23:45:50-08:00",
		"Thu, 29 Apr 2009 00:00:00 -0000 (EST)":          "2009-04-29T00:00:00Z",
		"29 Apr 2016 23:34:45.0000 (UTC) FILETIME=[F:0]": "2016-04-29T23:34:45Z",
		"2012-10-31 04-46-42":                            "2012-10-31T04:46:42Z",
		"2016-10-21T00:06:40Z":                           "2016-10-21T00:06:40Z",
	}
	for in, want := range cases {
		if got := ParseDate(in).Format(time.RFC3339); got != want {
			t.Errorf("ParseDate(%q) = %s, want %s", in, got, want)
		}
	}
	if !ParseDate("not a date").IsZero() || !ParseDate("").IsZero() {
		t.Error("ParseDate of garbage is not zero")
	}
}

func TestFieldHelpers(t *testing.T) {
	if got := TypedName("dns;mx.example.net (mx. -- Server LMTP)"); got != "mx.example.net" {
		t.Errorf("TypedName = %q", got)
	}
	if got := TypedName("mx.example.net"); got != "mx.example.net" {
		t.Errorf("TypedName untyped = %q", got)
	}
	if got := MessageID(" <abc@def> (comment)"); got != "abc@def" {
		t.Errorf("MessageID = %q", got)
	}
	if got := MessageID("bare@id.example"); got != "bare@id.example" {
		t.Errorf("MessageID bare = %q", got)
	}
	if got := DecodeWords("=?UTF-8?Q?AutoRespons?= :Nyaan?"); got != "AutoRespons :Nyaan?" {
		t.Errorf("DecodeWords = %q", got)
	}
	if got := DecodeWords("=?ISO-2022-JP?B?GyRCJEskYyE8JHMbKEI=?="); got != "=?ISO-2022-JP?B?GyRCJEskYyE8JHMbKEI=?=" {
		t.Errorf("DecodeWords of an unsupported charset = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nA: b\n\nc\n--b--"))
	f.Add([]byte("Content-Transfer-Encoding: quoted-printable\n\n=\n=4"))
	f.Add([]byte("From x\r\rA:\t\r\n b\r\n\r\n--x\n--x--"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := Parse(b)
		n := 0
		p.Walk(func(*Part) bool { n++; return true })
		if n > MaxParts+1 {
			t.Fatalf("%d parts", n)
		}
		for _, a := range FindAddresses(string(b), 10) {
			if CleanAddress(a) != a {
				t.Fatalf("FindAddresses gave %q, which CleanAddress changes", a)
			}
		}
	})
}
