package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// ErrDataTooLarge is returned by the message reader once the content
// exceeds Server.MaxMessageBytes (RFC 1870 §6.3: 552 5.3.4).
var ErrDataTooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
	Message: "message size exceeds fixed maximum message size"}

// ErrLineTooLong is returned by the DATA reader for a line longer than
// Server.MaxDataLineLength (RFC 5321 §4.5.3.1.6).
var ErrLineTooLong = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
	Message: "message line too long (RFC 5321 §4.5.3.1.6)"}

// dotReader yields DATA content up to the terminating CRLF.CRLF, removing
// the leading dot of stuffed lines (RFC 5321 §4.5.2). It scans whole
// buffered chunks with bytes.IndexByte rather than byte by byte. Only a
// line that follows CRLF can end the data, so "\n.\r\n" smuggles nothing.
type dotReader struct {
	br      *bufio.Reader
	maxSize int64 // 0: none
	maxLine int   // content octets per line, CRLF excluded; 0: none
	n       int64 // content octets so far
	lineLen int   // octets of the current line so far
	bol     bool  // at the beginning of a line (after CRLF)
	prevCR  bool  // the last octet of the previous chunk was CR
	err     error // sticky: io.EOF at the end, or why reading stopped
	ended   bool  // the terminator was read
}

func (d *dotReader) reset(br *bufio.Reader, maxSize int64, maxLine int) {
	*d = dotReader{br: br, maxSize: maxSize, maxLine: maxLine, bol: true}
}

func (d *dotReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && d.err == nil {
		if d.bol {
			b, err := d.br.Peek(1)
			if err != nil {
				d.fail(err)
				break
			}
			if b[0] == '.' {
				b, err = d.br.Peek(3)
				if len(b) == 3 && b[1] == '\r' && b[2] == '\n' {
					d.br.Discard(3)
					d.err, d.ended = io.EOF, true
					break
				}
				if err != nil && len(b) < 3 {
					d.fail(err)
					break
				}
				d.br.Discard(1) // a stuffed dot
			}
			d.bol = false
		}
		if d.br.Buffered() == 0 {
			if _, err := d.br.Peek(1); err != nil {
				d.fail(err)
				break
			}
		}
		chunk, _ := d.br.Peek(d.br.Buffered())
		seg, eol := chunk, false
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			seg, eol = chunk[:i+1], true
		}
		if room := len(p) - n; len(seg) > room {
			seg, eol = seg[:room], false
		}
		if d.maxLine > 0 && d.overLong(seg, eol) {
			d.err = ErrLineTooLong
			break
		}
		copy(p[n:], seg)
		n += len(seg)
		d.br.Discard(len(seg))
		d.n += int64(len(seg))
		last := seg[len(seg)-1]
		if eol {
			d.bol = len(seg) >= 2 && seg[len(seg)-2] == '\r' || len(seg) == 1 && d.prevCR
			d.lineLen = 0
		} else {
			d.lineLen += len(seg)
		}
		d.prevCR = last == '\r'
		if d.maxSize > 0 && d.n > d.maxSize {
			d.err = ErrDataTooLarge
		}
	}
	if n > 0 && d.err == io.EOF {
		return n, nil // EOF on the next call
	}
	return n, d.err
}

// overLong reports whether the current line, extended by seg, has more
// than maxLine octets of content.
func (d *dotReader) overLong(seg []byte, eol bool) bool {
	total := d.lineLen + len(seg)
	if total <= d.maxLine {
		return false
	}
	content := total
	if eol {
		content-- // LF
		if len(seg) >= 2 && seg[len(seg)-2] == '\r' || len(seg) == 1 && d.prevCR {
			content--
		}
	} else if seg[len(seg)-1] == '\r' {
		content-- // may be the CR of CRLF
	}
	return content > d.maxLine
}

func (d *dotReader) fail(err error) {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	d.err = err
}

// drain reads and discards the rest of the data, so that a refused message
// cannot leave its tail to be read as commands. It returns an error only if
// the connection failed.
func (d *dotReader) drain() error {
	if d.ended {
		return nil
	}
	if d.err == ErrLineTooLong || d.err == ErrDataTooLarge {
		d.err = nil
	}
	if d.err != nil {
		return d.err
	}
	d.maxSize, d.maxLine = 0, 0
	var scratch [4096]byte
	for {
		_, err := d.Read(scratch[:])
		if d.ended {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (c *Conn) handleData(arg string) {
	if !c.needHello() {
		return
	}
	if arg != "" {
		c.reply(501, smtp.EnhancedCode{5, 5, 4}, "DATA takes no argument")
		return
	}
	if c.bdatOpen {
		c.reply(503, smtp.EnhancedCode{5, 5, 1}, "DATA not allowed during BDAT")
		return
	}
	if !c.mailOK || c.rcpts == 0 {
		c.reply(503, smtp.EnhancedCode{5, 5, 1}, "need RCPT before DATA")
		return
	}
	c.reply(354, smtp.NoEnhancedCode, "go ahead, end with <CRLF>.<CRLF>")
	c.inData.Store(true)
	defer c.inData.Store(false)
	c.dr.reset(c.br, c.srv.MaxMessageBytes, c.srv.MaxDataLineLength)
	err := c.session.Data(&c.dr)
	readErr := c.dr.err
	if derr := c.dr.drain(); derr != nil {
		c.quit = true // the connection failed mid-message: nothing to answer
		c.resetTx()
		return
	}
	if err == nil && (readErr == ErrDataTooLarge || readErr == ErrLineTooLong) {
		err = readErr // the session ignored the reader's refusal
	}
	c.finishTx(err)
}

// finishTx answers the end of a message and ends the transaction.
func (c *Conn) finishTx(err error) {
	if err != nil {
		c.replyErr(err)
	} else {
		c.reply(250, smtp.EnhancedCode{2, 0, 0}, "OK: queued")
	}
	c.resetTx()
}

// handleBdat receives one chunk (RFC 3030 §2): "BDAT size [LAST]". The
// chunk is read in full even when it is refused, since the client sends it
// without waiting; the message goes to the session after LAST.
func (c *Conn) handleBdat(arg string) {
	f := strings.Fields(arg)
	last := len(f) == 2 && strings.EqualFold(f[1], "LAST")
	var size int64 = -1
	if len(f) >= 1 && len(f[0]) <= 18 && strings.TrimLeft(f[0], "0123456789") == "" {
		size, _ = strconv.ParseInt(f[0], 10, 64)
	}
	if size < 0 || len(f) > 2 || len(f) == 2 && !last {
		// The chunk's length is unknown, so the stream cannot be followed.
		c.reply(501, smtp.EnhancedCode{5, 5, 4}, "syntax: BDAT size [LAST]")
		c.quit = true
		return
	}
	var refuse *smtp.SMTPError
	switch {
	case c.session == nil:
		refuse = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "send EHLO first"}
	case !c.mailOK || c.rcpts == 0:
		refuse = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "need RCPT before BDAT"}
	case c.srv.MaxMessageBytes > 0 && c.bdatSize+size > c.srv.MaxMessageBytes:
		refuse = ErrDataTooLarge
	}
	c.inData.Store(true)
	defer func() {
		if !c.bdatOpen {
			c.inData.Store(false)
		}
	}()
	if refuse != nil {
		if _, err := c.br.Discard(int(min(size, 1<<62))); err != nil {
			c.quit = true
			return
		}
		if refuse.Code == 552 {
			c.finishTx(refuse) // the transaction is over (RFC 3030 §4.2)
			return
		}
		c.replyErr(refuse)
		return
	}
	c.bdatOpen = true
	// Grown as the octets arrive, not from the announced size, so that
	// "BDAT 50000000" alone does not claim 50 MB.
	buf := bytes.NewBuffer(c.bdat)
	if _, err := io.CopyN(buf, c.br, size); err != nil {
		c.quit = true
		c.resetTx()
		return
	}
	c.bdat = buf.Bytes()
	c.bdatSize += size
	if !last {
		c.reply(250, smtp.EnhancedCode{2, 0, 0}, strconv.FormatInt(size, 10)+" octets received")
		return
	}
	err := c.session.Data(bytes.NewReader(c.bdat))
	c.finishTx(err)
}
