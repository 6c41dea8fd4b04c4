package smtpd

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// readBufSize is the input buffer of a connection: DATA is scanned a buffer
// at a time, so a large one means fewer read calls for large messages.
const readBufSize = 64 << 10

// maxErrors is how many unrecognised or over-long commands a client may
// send before it is disconnected.
const maxErrors = 10

// maxDiscard bounds how much of an over-long command line is skipped to
// find its end; beyond it the client is answered and disconnected.
const maxDiscard = 16 << 20

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

// Conn is one client connection. Backends may read its state; the engine
// owns it.
type Conn struct {
	srv *Server
	raw net.Conn // as accepted; never replaced
	nc  net.Conn // raw, or the *tls.Conn after STARTTLS
	br  *bufio.Reader
	bw  *bufio.Writer

	helo     string
	enhanced bool // EHLO (not HELO) was used
	session  Session
	didAuth  bool
	errCount int
	quit     bool

	// transaction state
	mailOK   bool
	rcpts    int
	bdat     []byte // BDAT chunks so far
	bdatOpen bool   // a BDAT transaction has started
	bdatSize int64

	inData atomic.Bool // reading or handing over message content; shutdown waits for it
	dr     dotReader
}

func newConn(s *Server, nc net.Conn) *Conn {
	c := &Conn{srv: s, raw: nc, nc: nc}
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(netReader{c})
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(netWriter{c})
	return c
}

// Conn returns the network connection: the accepted one, or the TLS
// connection over it after STARTTLS.
func (c *Conn) Conn() net.Conn { return c.nc }

// Hostname is the name the client gave in HELO or EHLO ("" before).
func (c *Conn) Hostname() string { return c.helo }

// TLSConnectionState returns the TLS state, and false if the connection is
// not encrypted.
func (c *Conn) TLSConnectionState() (tls.ConnectionState, bool) {
	if tc, ok := c.nc.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// netReader reads from the connection. Before it may block, it writes out
// the replies buffered so far: replies to pipelined commands leave in one
// write, once the client has nothing more in flight (RFC 2920 §3.2).
type netReader struct{ c *Conn }

func (r netReader) Read(p []byte) (int, error) {
	c := r.c
	if c.bw.Buffered() > 0 {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	d := time.Now().Add(c.srv.readTimeout())
	if c.srv.closing.Load() && !c.inData.Load() {
		d = time.Now() // shutting down: no new command is read
	}
	c.nc.SetReadDeadline(d)
	return c.nc.Read(p)
}

type netWriter struct{ c *Conn }

func (w netWriter) Write(p []byte) (int, error) {
	w.c.nc.SetWriteDeadline(time.Now().Add(w.c.srv.writeTimeout()))
	return w.c.nc.Write(p)
}

func (c *Conn) flush() error { return c.bw.Flush() }

func (c *Conn) serve() {
	defer c.close()
	defer func() {
		if r := recover(); r != nil {
			c.srv.logf("smtpd: panic serving %v: %v\n%s", c.raw.RemoteAddr(), r, debug.Stack())
			c.reply(421, smtp.EnhancedCode{4, 3, 0}, "internal error, closing connection")
			c.flush()
		}
	}()
	c.reply(220, smtp.NoEnhancedCode, c.srv.Domain+" ESMTP Sluice ready")
	for !c.quit {
		if c.srv.closing.Load() && !c.inData.Load() {
			c.reply(421, smtp.EnhancedCode{4, 3, 2}, c.srv.Domain+" shutting down")
			break
		}
		line, err := c.readLine()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				c.reply(500, smtp.EnhancedCode{5, 5, 2}, "command line too long")
				if !c.quit && c.countError() {
					continue
				}
				break
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
				if c.srv.closing.Load() {
					c.reply(421, smtp.EnhancedCode{4, 3, 2}, c.srv.Domain+" shutting down")
				} else {
					c.reply(421, smtp.EnhancedCode{4, 4, 2}, c.srv.Domain+" idle timeout, closing connection")
				}
			}
			break
		}
		c.handle(line)
	}
	c.flush()
}

func (c *Conn) close() {
	if c.session != nil {
		c.session.Logout()
		c.session = nil
	}
	c.raw.Close()
	if c.nc != c.raw {
		c.nc.Close()
	}
	c.srv.untrack(c)
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.bw.Reset(nil)
	writerPool.Put(c.bw)
	c.br, c.bw = nil, nil
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next command line without its line ending (CRLF;
// a bare LF is tolerated for commands). An over-long line is skipped to its
// end and reported as errLineTooLong.
func (c *Conn) readLine() (string, error) {
	b, err := c.br.ReadSlice('\n')
	if err == nil && len(b) <= c.srv.maxLine() {
		b = b[:len(b)-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
		return string(b), nil
	}
	if err != nil && err != bufio.ErrBufferFull {
		return "", err
	}
	// Too long: skip to the end of the line, within reason.
	skipped := len(b)
	for err == bufio.ErrBufferFull {
		b, err = c.br.ReadSlice('\n')
		skipped += len(b)
		if skipped > maxDiscard {
			c.quit = true
			return "", errLineTooLong
		}
	}
	if err != nil {
		return "", err
	}
	return "", errLineTooLong
}

// countError notes a protocol error; false means the client has had too
// many and is told so.
func (c *Conn) countError() bool {
	c.errCount++
	if c.errCount >= maxErrors {
		c.reply(421, smtp.EnhancedCode{4, 7, 0}, "too many errors, closing connection")
		return false
	}
	return true
}

// reply buffers a one-line reply with its RFC 2034 enhanced code, which is
// omitted when it is NoEnhancedCode.
func (c *Conn) reply(code int, ec smtp.EnhancedCode, text string) {
	c.replyLines(code, ec, []string{text})
}

func (c *Conn) replyLines(code int, ec smtp.EnhancedCode, lines []string) {
	if ec == smtp.EnhancedCodeNotSet {
		ec = smtp.EnhancedCode{code / 100, 0, 0}
	}
	if code/100 == 3 || ec[0] != code/100 {
		ec = smtp.NoEnhancedCode // RFC 2034 §4: none on 3xx; a mismatched class would mislead
	}
	var scratch [48]byte
	for i, l := range lines {
		b := strconv.AppendInt(scratch[:0], int64(code), 10)
		if i < len(lines)-1 {
			b = append(b, '-')
		} else {
			b = append(b, ' ')
		}
		if ec != smtp.NoEnhancedCode {
			b = strconv.AppendInt(b, int64(ec[0]), 10)
			b = append(b, '.')
			b = strconv.AppendInt(b, int64(ec[1]), 10)
			b = append(b, '.')
			b = strconv.AppendInt(b, int64(ec[2]), 10)
			b = append(b, ' ')
		}
		c.bw.Write(b)
		c.bw.WriteString(l)
		c.bw.WriteString("\r\n")
	}
	if code == 421 {
		c.quit = true // RFC 5321 §3.8: 421 closes the channel
	}
}

// replyErr sends err as its SMTP reply: an *smtp.SMTPError as it is, any
// other error as 451 4.3.0 (logged, never shown).
func (c *Conn) replyErr(err error) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		c.srv.logf("smtpd: %v: %v", c.raw.RemoteAddr(), err)
		se = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "local error, try again later"}
	}
	code := se.Code
	if code < 200 || code > 599 {
		code = 451
	}
	msg := strings.ReplaceAll(se.Message, "\r", "")
	c.replyLines(code, se.EnhancedCode, strings.Split(msg, "\n"))
}

// handle runs one command.
func (c *Conn) handle(line string) {
	verb, arg := parseCommand(line)
	switch verb {
	case "EHLO", "HELO":
		c.handleHello(verb == "EHLO", arg)
	case "MAIL":
		c.handleMail(arg)
	case "RCPT":
		c.handleRcpt(arg)
	case "DATA":
		c.handleData(arg)
	case "BDAT":
		c.handleBdat(arg)
	case "RSET":
		c.resetTx()
		c.reply(250, smtp.EnhancedCode{2, 0, 0}, "OK")
	case "NOOP":
		c.reply(250, smtp.EnhancedCode{2, 0, 0}, "OK")
	case "VRFY", "EXPN":
		// RFC 5321 §3.5.3: 252 when we will not verify.
		c.reply(252, smtp.EnhancedCode{2, 5, 0}, "cannot VRFY user, but will accept message and attempt delivery")
	case "QUIT":
		c.reply(221, smtp.EnhancedCode{2, 0, 0}, "bye")
		c.quit = true
	case "STARTTLS":
		c.handleStartTLS(arg)
	case "AUTH":
		c.handleAuth(arg)
	case "HELP", "SEND", "SOML", "SAML", "TURN":
		c.reply(502, smtp.EnhancedCode{5, 5, 1}, "command not implemented")
	default:
		c.reply(500, smtp.EnhancedCode{5, 5, 2}, "command unrecognized")
		c.countError()
	}
}

// resetTx ends the transaction (RFC 5321 §4.1.1.5).
func (c *Conn) resetTx() {
	if c.session != nil && (c.mailOK || c.bdatOpen) {
		c.session.Reset()
	}
	c.mailOK = false
	c.rcpts = 0
	c.bdatOpen = false
	c.bdatSize = 0
	if cap(c.bdat) > 1<<20 {
		c.bdat = nil // do not keep a large message's buffer for the whole session
	}
	c.bdat = c.bdat[:0]
}

func (c *Conn) handleHello(ehlo bool, arg string) {
	f := strings.Fields(arg)
	if len(f) == 0 {
		c.reply(501, smtp.EnhancedCode{5, 5, 4}, "domain or address literal required")
		return
	}
	domain := f[0] // anything after it is ignored, as most servers do
	c.helo = domain
	c.enhanced = ehlo
	if c.session != nil {
		c.resetTx() // RFC 5321 §4.1.4: a later EHLO resets like RSET
	} else {
		sess, err := c.srv.Backend.NewSession(c)
		if err != nil {
			c.helo = ""
			c.replyErr(err)
			return
		}
		c.session = sess
	}
	if !ehlo {
		c.reply(250, smtp.NoEnhancedCode, c.srv.Domain)
		return
	}
	_, isTLS := c.TLSConnectionState()
	lines := make([]string, 0, 16)
	lines = append(lines, c.srv.Domain+" greets "+domain,
		"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING")
	if c.srv.MaxMessageBytes > 0 {
		lines = append(lines, "SIZE "+strconv.FormatInt(c.srv.MaxMessageBytes, 10))
	} else {
		lines = append(lines, "SIZE")
	}
	if c.srv.TLSConfig != nil && !isTLS {
		lines = append(lines, "STARTTLS")
	}
	if as, ok := c.session.(AuthSession); ok && (isTLS || c.srv.AllowInsecureAuth) && !c.didAuth {
		if mechs := as.AuthMechanisms(); len(mechs) > 0 {
			lines = append(lines, "AUTH "+strings.Join(mechs, " "))
		}
	}
	if c.srv.EnableSMTPUTF8 {
		lines = append(lines, "SMTPUTF8")
	}
	if c.srv.EnableDSN {
		lines = append(lines, "DSN")
	}
	if c.srv.EnableREQUIRETLS && isTLS {
		lines = append(lines, "REQUIRETLS")
	}
	lines = append(lines, "LIMITS RCPTMAX="+strconv.Itoa(c.srv.maxRcpts()))
	c.replyLines(250, smtp.NoEnhancedCode, lines)
}

func (c *Conn) needHello() bool {
	if c.session == nil {
		c.reply(503, smtp.EnhancedCode{5, 5, 1}, "send EHLO or HELO first")
		return false
	}
	return true
}

func (c *Conn) handleMail(arg string) {
	if !c.needHello() {
		return
	}
	if c.mailOK || c.bdatOpen {
		c.reply(503, smtp.EnhancedCode{5, 5, 1}, "nested MAIL command")
		return
	}
	_, isTLS := c.TLSConnectionState()
	from, opts, perr := parseMail(arg, c.extensions(isTLS))
	if perr != nil {
		c.replyErr(perr)
		return
	}
	if c.srv.MaxMessageBytes > 0 && opts.Size > c.srv.MaxMessageBytes {
		// RFC 1870 §6.1
		c.reply(552, smtp.EnhancedCode{5, 3, 4}, "message size exceeds fixed maximum message size")
		return
	}
	if err := c.session.Mail(from, opts); err != nil {
		c.replyErr(err)
		return
	}
	c.mailOK = true
	c.reply(250, smtp.EnhancedCode{2, 1, 0}, "OK")
}

func (c *Conn) handleRcpt(arg string) {
	if !c.needHello() {
		return
	}
	if !c.mailOK {
		c.reply(503, smtp.EnhancedCode{5, 5, 1}, "need MAIL before RCPT")
		return
	}
	if c.rcpts >= c.srv.maxRcpts() {
		c.reply(452, smtp.EnhancedCode{4, 5, 3}, "too many recipients") // RFC 5321 §4.5.3.1.10
		return
	}
	to, opts, perr := parseRcpt(arg, c.extensions(false))
	if perr != nil {
		c.replyErr(perr)
		return
	}
	if err := c.session.Rcpt(to, opts); err != nil {
		c.replyErr(err)
		return
	}
	c.rcpts++
	c.reply(250, smtp.EnhancedCode{2, 1, 5}, "OK")
}

func (c *Conn) extensions(isTLS bool) ext {
	return ext{utf8: c.srv.EnableSMTPUTF8, dsn: c.srv.EnableDSN, requireTLS: c.srv.EnableREQUIRETLS && isTLS}
}
