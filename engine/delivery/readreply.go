package delivery

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
)

// maxReplyBytes caps one reply from a remote server, all its lines
// included. RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; this is
// far more generous, yet bounded.
const maxReplyBytes = 64 << 10

// errReplyTooLong is returned when a reply exceeds maxReplyBytes.
var errReplyTooLong = errors.New("delivery: reply exceeds size limit")

// malformedError describes a reply that does not follow RFC 5321 §4.2.
type malformedError struct{ why, line string }

func (e *malformedError) Error() string {
	l := e.line
	if len(l) > 64 {
		l = l[:64] + "…"
	}
	return fmt.Sprintf("delivery: malformed reply (%s): %q", e.why, l)
}

// readReply reads one complete reply (RFC 5321 §4.2.1: "xyz-text" lines
// followed by a last "xyz text" line, all with the same code) and returns its
// code and text, the lines' texts joined with "\n". Control characters in the
// text are replaced by '?', so the text is safe to log and to quote in a DSN.
// It never reads more than maxReplyBytes; malformed input yields an error.
func readReply(br *bufio.Reader) (code int, text string, err error) {
	budget := maxReplyBytes
	var sb strings.Builder
	for n := 0; ; n++ {
		line, err := readLine(br, &budget)
		if err != nil {
			return 0, "", err
		}
		c, last, txt, err := parseLine(line)
		if err != nil {
			return 0, "", err
		}
		if n == 0 {
			code = c
		} else if c != code {
			// RFC 5321 §4.2.1: every line of a multi-line reply has the same code.
			return 0, "", &malformedError{"code changed within reply", line}
		} else {
			sb.WriteByte('\n')
		}
		writeSanitized(&sb, txt)
		if last {
			return code, sb.String(), nil
		}
	}
}

// readLine reads one line, without its line ending, charging its length to
// *budget. A bare LF is accepted as a line ending (robustness).
func readLine(br *bufio.Reader, budget *int) (string, error) {
	var long []byte
	for {
		frag, err := br.ReadSlice('\n')
		*budget -= len(frag)
		if *budget < 0 {
			return "", errReplyTooLong
		}
		switch {
		case err == bufio.ErrBufferFull:
			long = append(long, frag...)
			continue
		case err != nil:
			return "", err // io.EOF mid-reply or a socket error
		}
		if long != nil {
			frag = append(long, frag...)
		}
		frag = frag[:len(frag)-1]
		if n := len(frag); n > 0 && frag[n-1] == '\r' {
			frag = frag[:n-1]
		}
		return string(frag), nil
	}
}

// parseLine splits one reply line into its code, whether it is the last line
// of the reply, and its text.
func parseLine(line string) (code int, last bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", &malformedError{"short line", line}
	}
	// RFC 5321 §4.2: three digits, the first 2–5, the second 0–5.
	if line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' || line[2] < '0' || line[2] > '9' {
		return 0, false, "", &malformedError{"bad reply code", line}
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) == 3 {
		return code, true, "", nil
	}
	switch line[3] {
	case ' ':
		return code, true, line[4:], nil
	case '-':
		return code, false, line[4:], nil
	}
	return 0, false, "", &malformedError{"bad separator after code", line}
}

// writeSanitized copies s to sb, replacing ASCII control characters by '?'.
func writeSanitized(sb *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x20 && b != '\t' || b == 0x7f {
			b = '?'
		}
		sb.WriteByte(b)
	}
}
