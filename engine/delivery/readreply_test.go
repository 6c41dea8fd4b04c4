package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/engine/reply"
)

func TestReadReply(t *testing.T) {
	cases := []struct {
		in   string
		code int
		text string
		err  bool
	}{
		{"250 ok\r\n", 250, "ok", false},
		{"250\r\n", 250, "", false},
		{"250 ok\n", 250, "ok", false}, // bare LF tolerated
		{"250-mx.test hello\r\n250-PIPELINING\r\n250 SIZE 100\r\n", 250, "mx.test hello\nPIPELINING\nSIZE 100", false},
		{"250-\r\n250 \r\n", 250, "\n", false},
		{"550 5.1.1 a\tb\x01c\r\n", 550, "5.1.1 a\tb?c", false},
		{"421-4.7.0 one\r\n421 4.7.0 two\r\n", 421, "4.7.0 one\n4.7.0 two", false},
		{"", 0, "", true},
		{"250 no newline", 0, "", true},
		{"25\r\n", 0, "", true},
		{"2500 x\r\n", 0, "", true},
		{"abc def\r\n", 0, "", true},
		{"160 x\r\n", 0, "", true},
		{"260 x\r\n", 0, "", true},
		{"250-a\r\n550 b\r\n", 0, "", true},
		{"250-a\r\n", 0, "", true},
		{"250 " + strings.Repeat("x", maxReplyBytes) + "\r\n", 0, "", true},
	}
	for _, tc := range cases {
		code, text, err := readReply(bufio.NewReaderSize(strings.NewReader(tc.in), 16))
		if (err != nil) != tc.err || code != tc.code || text != tc.text {
			t.Errorf("readReply(%.40q) = %d, %q, %v; want %d, %q, err %v", tc.in, code, text, err, tc.code, tc.text, tc.err)
		}
	}
}

// TestReadReplySequence: pipelined replies arrive back to back and are
// read one at a time.
func TestReadReplySequence(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("250 2.1.0 ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go\r\n"))
	for _, want := range []int{250, 550, 354} {
		code, _, err := readReply(br)
		if err != nil || code != want {
			t.Fatalf("got %d, %v; want %d", code, err, want)
		}
	}
	if _, _, err := readReply(br); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last reply: %v, want EOF", err)
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		"220 mx.test ESMTP\r\n",
		"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 DSN\r\n",
		"550 5.1.1 <x@y>: user unknown\r\n354 go\r\n",
		"250-a\r\n251 b\r\n",
		"250 \n",
		"421",
		"\r\n\r\n",
		"2\x00\x00 x\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		for range 1000 {
			code, text, err := readReply(br)
			if err != nil {
				return
			}
			if code < 200 || code > 559 {
				t.Fatalf("code %d accepted", code)
			}
			for _, b := range []byte(text) {
				if b < 0x20 && b != '\t' && b != '\n' || b == 0x7f {
					t.Fatalf("control byte %#x in text %q", b, text)
				}
			}
			if len(text) > maxReplyBytes {
				t.Fatalf("text of %d bytes exceeds the cap", len(text))
			}
			if r := reply.Parse(code, text); r.Code != code {
				t.Fatalf("reply.Parse changed the code")
			}
		}
	})
}
