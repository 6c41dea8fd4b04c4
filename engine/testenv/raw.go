package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Raw is a line-level SMTP client for tests that must send what a well-
// behaved client would not (bare LF, NUL bytes, huge lines) and look at the
// exact replies.
type Raw struct {
	tb       testing.TB
	Conn     net.Conn
	br       *bufio.Reader
	Timeout  time.Duration // per reply [10s]
	Greeting Reply
}

// Reply is one SMTP reply.
type Reply struct {
	Code  int
	Enh   string   // enhanced status of the last line, "5.1.1", if present
	Lines []string // text of each line, after the code and separator
}

// String renders the reply as "550 5.7.1 text".
func (r Reply) String() string {
	return fmt.Sprintf("%d %s", r.Code, strings.Join(r.Lines, " / "))
}

// DialRaw connects to addr and reads the greeting; it fails tb on error.
func DialRaw(tb testing.TB, addr string) *Raw {
	tb.Helper()
	return DialRawFrom(tb, "", addr)
}

// DialRawFrom is DialRaw from a chosen local address ("" lets the kernel
// choose).
func DialRawFrom(tb testing.TB, localIP, addr string) *Raw {
	tb.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	r := &Raw{tb: tb, Conn: c, br: bufio.NewReaderSize(c, 4096), Timeout: 10 * time.Second}
	tb.Cleanup(func() { c.Close() })
	g, err := r.ReadReply()
	if err != nil {
		tb.Fatalf("greeting from %s: %v", addr, err)
	}
	r.Greeting = g
	return r
}

// Write sends bytes as they are.
func (r *Raw) Write(b []byte) error {
	r.Conn.SetWriteDeadline(time.Now().Add(r.Timeout))
	_, err := r.Conn.Write(b)
	return err
}

// Send writes line followed by CRLF.
func (r *Raw) Send(line string) error {
	return r.Write([]byte(line + "\r\n"))
}

// ReadReply reads one (possibly multi-line) reply, bounded to 100 lines of
// 4 KB.
func (r *Raw) ReadReply() (Reply, error) {
	r.Conn.SetReadDeadline(time.Now().Add(r.Timeout))
	var rep Reply
	for n := 0; n < 100; n++ {
		line, err := r.readLine()
		if err != nil {
			return rep, err
		}
		if len(line) < 3 {
			return rep, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return rep, fmt.Errorf("malformed reply line %q", line)
		}
		if rep.Code != 0 && code != rep.Code {
			return rep, fmt.Errorf("reply code changed in %q", line)
		}
		rep.Code = code
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		rep.Lines = append(rep.Lines, text)
		if len(line) == 3 || line[3] == ' ' {
			if f := strings.Fields(text); len(f) > 0 && isStatus(f[0]) {
				rep.Enh = f[0]
			}
			return rep, nil
		}
		if line[3] != '-' {
			return rep, fmt.Errorf("malformed reply line %q", line)
		}
	}
	return rep, errors.New("reply longer than 100 lines")
}

func (r *Raw) readLine() (string, error) {
	var b []byte
	for {
		chunk, more, err := r.br.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > 4096 {
			return "", errors.New("reply line longer than 4 KB")
		}
		if !more {
			return string(b), nil
		}
	}
}

func isStatus(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || (p[0] != "2" && p[0] != "4" && p[0] != "5") {
		return false
	}
	for _, x := range p[1:] {
		if _, err := atoi(x); err != nil {
			return false
		}
	}
	return true
}

// CmdErr sends line and reads the reply.
func (r *Raw) CmdErr(line string) (Reply, error) {
	if err := r.Send(line); err != nil {
		return Reply{}, err
	}
	return r.ReadReply()
}

// Cmd sends line and reads the reply; an I/O error fails the test.
func (r *Raw) Cmd(line string) Reply {
	r.tb.Helper()
	rep, err := r.CmdErr(line)
	if err != nil {
		r.tb.Fatalf("%.60q: %v", line, err)
	}
	return rep
}

// Transaction runs MAIL, RCPT for each recipient, DATA and the dot-stuffed
// message. It returns the first reply that is not a success, or the reply
// to the final dot.
func (r *Raw) Transaction(from string, to []string, msg []byte) (Reply, error) {
	rep, err := r.CmdErr("MAIL FROM:<" + from + ">")
	if err != nil || rep.Code != 250 {
		return rep, err
	}
	for _, rcpt := range to {
		if rep, err = r.CmdErr("RCPT TO:<" + rcpt + ">"); err != nil || rep.Code/100 != 2 {
			return rep, err
		}
	}
	if rep, err = r.CmdErr("DATA"); err != nil || rep.Code != 354 {
		return rep, err
	}
	if err := r.Write(DotStuff(msg)); err != nil {
		return Reply{}, err
	}
	return r.ReadReply()
}

// DotStuff returns msg with CRLF line endings kept as they are, leading
// dots doubled (RFC 5321 §4.5.2) and the terminating ".\r\n" appended
// (after a CRLF if msg does not end with one).
func DotStuff(msg []byte) []byte {
	var b bytes.Buffer
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		line := msg
		if i >= 0 {
			line, msg = msg[:i+1], msg[i+1:]
		} else {
			msg = nil
		}
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
	}
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// Close closes the connection.
func (r *Raw) Close() error { return r.Conn.Close() }
