package smtpd

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzParseCommand runs hostile command lines through the verb, MAIL and
// RCPT parsers: nothing may panic, and a parsed address never keeps its
// angle brackets. CI runs the seed corpus only.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+2By AUTH=<>",
		"RCPT TO:<@r1,@r2:a@b.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bb@c.test",
		"RCPT TO:<x@y> ORCPT=utf-8;\\x{E9}@y",
		`MAIL FROM:<"a>b"@c.test>`, "MAIL FROM:<>", "MAIL FROM:a@b", "MAIL FROM:<a@b", "RCPT TO:<a@b> NOTIFY=NEVER,NEVER",
		"ehlo x", "BDAT 10 LAST", "AUTH PLAIN =", "MAIL FROM:<a@b> ENVID=+", "RCPT TO:<a@b> ORCPT=;", "\x00\xff",
	} {
		f.Add(s)
	}
	e := ext{utf8: true, dsn: true, requireTLS: true}
	f.Fuzz(func(t *testing.T, line string) {
		verb, arg := parseCommand(line)
		if verb != strings.ToUpper(verb) {
			t.Fatalf("verb %q not upper-cased", verb)
		}
		if from, opts, err := parseMail(arg, e); err == nil {
			if opts == nil || strings.ContainsAny(from, "<>") && !strings.Contains(from, `"`) {
				t.Fatalf("MAIL %q gave %q %+v", arg, from, opts)
			}
		}
		if to, opts, err := parseRcpt(arg, e); err == nil {
			if opts == nil || strings.ContainsAny(to, "<>") && !strings.Contains(to, `"`) {
				t.Fatalf("RCPT %q gave %q %+v", arg, to, opts)
			}
		}
	})
}

// FuzzDotReader checks the DATA reader against a direct decoder on
// arbitrary input: same content, and the data ends at the first CRLF.CRLF.
func FuzzDotReader(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", "..x\r\n.\r\n", "a\n.\r\nb\r\n.\r\n", ".\r\n", "x\r\n..\r\n.\r\nrest", "\r\r\n.\r\n"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		want, rest, ok := decodeDirect(in)
		br := bufioReaderSize(&slowReader{s: string(in), n: int(step%17) + 1}, 16)
		var d dotReader
		d.reset(br, 0, 0)
		got, err := io.ReadAll(&d)
		if !ok {
			if err == nil {
				t.Fatalf("%q: no terminator, but read ended cleanly", in)
			}
			return
		}
		left, _ := io.ReadAll(br)
		if err != nil || !bytes.Equal(got, want) || !bytes.Equal(left, rest) {
			t.Fatalf("%q: got %q (%v) rest %q; want %q rest %q", in, got, err, left, want, rest)
		}
	})
}

// decodeDirect is the RFC 5321 §4.5.2 decoder written the slow, obvious
// way: line by line, where a line ends at CRLF.
func decodeDirect(in []byte) (content, rest []byte, ok bool) {
	var out []byte
	for len(in) > 0 {
		i := bytes.Index(in, []byte("\r\n"))
		if i < 0 {
			return nil, nil, false
		}
		line := in[:i]
		in = in[i+2:]
		if string(line) == "." {
			return out, in, true
		}
		if len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return nil, nil, false
}
