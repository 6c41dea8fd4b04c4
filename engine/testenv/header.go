package testenv

import (
	"bufio"
	"bytes"
	"net/textproto"
	"strings"
)

// MessageID returns the Message-ID header of a raw message ("" if none).
func MessageID(data []byte) string {
	return headerValue(data, "Message-Id")
}

// headerValue returns the first header named name in the header section of
// data, unfolded and trimmed.
func headerValue(data []byte, name string) string {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		if end = bytes.Index(data, []byte("\n\n")); end < 0 {
			end = len(data)
		}
	}
	tp := textproto.NewReader(newBufReader(data[:end]))
	h, _ := tp.ReadMIMEHeader() // a partial header is still searched
	return strings.TrimSpace(h.Get(name))
}

// newBufReader reads a header section followed by the blank line that
// textproto needs to see its end.
func newBufReader(header []byte) *bufio.Reader {
	b := make([]byte, 0, len(header)+4)
	b = append(b, header...)
	b = append(b, "\r\n\r\n"...)
	return bufio.NewReader(bytes.NewReader(b))
}
