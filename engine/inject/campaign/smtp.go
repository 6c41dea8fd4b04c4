package campaign

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// smtpTimeout bounds each exchange with the server.
const smtpTimeout = 2 * time.Minute

// maxReplyBytes caps a server reply (all its lines).
const maxReplyBytes = 64 << 10

// smtpConn is one injecting session. With PIPELINING (RFC 2920) MAIL, RCPT
// and DATA leave in one write and their replies are read together.
type smtpConn struct {
	c        net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	pipeline bool
}

// smtpReply is a server reply; Code 0 means none was read.
type smtpReply struct {
	Code int
	Text string
}

func (r smtpReply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

// errUnreachable marks failures to reach the server at all.
var errUnreachable = errors.New("server unreachable")

func dialSMTP(ctx context.Context, addr, helo string) (*smtpConn, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnreachable, err)
	}
	s := &smtpConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriterSize(c, 64<<10)}
	if r, err := s.read(); err != nil || r.Code != 220 {
		c.Close()
		return nil, fmt.Errorf("%w: greeting: %v %v", errUnreachable, r, err)
	}
	s.w.WriteString("EHLO " + helo + "\r\n")
	r, err := s.flushRead()
	if err != nil || r.Code != 250 {
		c.Close()
		return nil, fmt.Errorf("EHLO: %v %v", r, err)
	}
	for _, l := range strings.Split(r.Text, "\n") {
		if strings.EqualFold(strings.TrimSpace(l), "PIPELINING") {
			s.pipeline = true
		}
	}
	return s, nil
}

// read reads one reply, joining the lines of a multiline one (RFC 5321
// §4.2.1) with "\n".
func (s *smtpConn) read() (smtpReply, error) {
	s.c.SetReadDeadline(time.Now().Add(smtpTimeout))
	var lines []string
	total := 0
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return smtpReply{}, err
		}
		total += len(l)
		if total > maxReplyBytes {
			return smtpReply{}, errors.New("reply too long")
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 3 {
			return smtpReply{}, fmt.Errorf("malformed reply %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil {
			return smtpReply{}, fmt.Errorf("malformed reply %q", l)
		}
		text := ""
		if len(l) > 4 {
			text = l[4:]
		}
		lines = append(lines, text)
		if len(l) == 3 || l[3] != '-' {
			return smtpReply{Code: code, Text: strings.Join(lines, "\n")}, nil
		}
	}
}

func (s *smtpConn) flushRead() (smtpReply, error) {
	s.c.SetWriteDeadline(time.Now().Add(smtpTimeout))
	if err := s.w.Flush(); err != nil {
		return smtpReply{}, err
	}
	return s.read()
}

// send runs one transaction. A nil error with a non-2xx reply is a refusal
// of the message (or of its recipient); an error means the session is
// unusable.
func (s *smtpConn) send(from, rcpt string, msg []byte) (smtpReply, error) {
	cmds := []string{"MAIL FROM:<" + from + ">", "RCPT TO:<" + rcpt + ">", "DATA"}
	var replies [3]smtpReply
	if s.pipeline {
		for _, c := range cmds {
			s.w.WriteString(c + "\r\n")
		}
		s.c.SetWriteDeadline(time.Now().Add(smtpTimeout))
		if err := s.w.Flush(); err != nil {
			return smtpReply{}, err
		}
		for i := range cmds {
			r, err := s.read()
			if err != nil {
				return smtpReply{}, err
			}
			replies[i] = r
		}
	} else {
		for i, c := range cmds {
			s.w.WriteString(c + "\r\n")
			r, err := s.flushRead()
			if err != nil {
				return smtpReply{}, err
			}
			replies[i] = r
			if r.Code/100 != 2 && r.Code != 354 {
				break
			}
		}
	}
	for i := range 2 {
		if replies[i].Code/100 != 2 {
			if replies[2].Code == 354 { // RFC 2920 §3.1 wants 503/554 here; end the data at once
				s.w.WriteString(".\r\n")
				s.flushRead()
			}
			err := s.reset()
			return replies[i], err
		}
	}
	if replies[2].Code != 354 {
		return replies[2], s.reset()
	}
	writeDotStuffed(s.w, msg)
	s.w.WriteString(".\r\n")
	return s.flushRead()
}

func (s *smtpConn) reset() error {
	s.w.WriteString("RSET\r\n")
	_, err := s.flushRead()
	return err
}

func (s *smtpConn) close() {
	s.w.WriteString("QUIT\r\n")
	s.flushRead()
	s.c.Close()
}

// writeDotStuffed writes msg (CRLF lines) with RFC 5321 §4.5.2
// transparency: a line starting with "." gets another.
func writeDotStuffed(w *bufio.Writer, msg []byte) {
	for len(msg) > 0 {
		if msg[0] == '.' {
			w.WriteByte('.')
		}
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			w.Write(msg)
			w.WriteString("\r\n")
			return
		}
		w.Write(msg[:i+1])
		msg = msg[i+1:]
	}
}
