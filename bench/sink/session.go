package sink

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
	"time"
)

const maxLine = 4096 // longer command lines are refused (RFC 5321 §4.5.3.1.4 says 512)

// session is one SMTP connection.
type session struct {
	s      *Sink
	c      net.Conn
	id     uint64
	src    string
	r      *bufio.Reader
	w      *bufio.Writer
	rcpts  int
	domain string // of the first accepted recipient
	inTx   bool
}

// reply queues a reply; it is flushed when the client has nothing more
// pipelined (RFC 2920 §3.1), after the round-trip latency.
func (ss *session) reply(line string) error {
	ss.w.WriteString(line)
	ss.w.WriteString("\r\n")
	if ss.r.Buffered() > 0 {
		return nil
	}
	return ss.flush()
}

func (ss *session) flush() error {
	if ss.s.opts.Latency > 0 {
		if !ss.sleep(ss.s.opts.Latency) {
			return net.ErrClosed
		}
	}
	return ss.w.Flush()
}

// sleep waits d or until the sink stops; false if it stopped.
func (ss *session) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ss.s.stop:
		return false
	}
}

func (s *Sink) serve(c net.Conn, id uint64) {
	src, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	ss := &session{s: s, c: c, id: id, src: src, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 4<<10)}
	for s.hold.Load() {
		if !ss.sleep(20 * time.Millisecond) {
			return
		}
	}
	if ss.reply("220 sink.bench.test ESMTP bench sink") != nil {
		return
	}
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		line, err := ss.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxLine {
				ss.reply("500 5.5.2 line too long")
				return
			}
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		verb := line
		arg := []byte(nil)
		if i := bytes.IndexByte(line, ' '); i >= 0 {
			verb, arg = line[:i], line[i+1:]
		}
		var werr error
		switch string(bytes.ToUpper(verb)) {
		case "EHLO":
			werr = ss.reply("250-sink.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE " + strconv.FormatInt(s.opts.MaxSize, 10))
		case "HELO":
			werr = ss.reply("250 sink.bench.test")
		case "MAIL":
			ss.inTx, ss.rcpts, ss.domain = true, 0, ""
			werr = ss.reply("250 2.1.0 Ok")
		case "RCPT":
			werr = ss.rcpt(string(arg))
			if werr == errClose {
				return
			}
		case "DATA":
			if !ss.inTx || ss.rcpts == 0 {
				werr = ss.reply("554 5.5.1 no valid recipients")
				break
			}
			if err := ss.reply("354 End data with <CR><LF>.<CR><LF>"); err != nil {
				return
			}
			if ss.data() != nil {
				return
			}
		case "RSET":
			ss.inTx, ss.rcpts = false, 0
			werr = ss.reply("250 2.0.0 Ok")
		case "NOOP":
			werr = ss.reply("250 2.0.0 Ok")
		case "QUIT":
			ss.reply("221 2.0.0 Bye")
			return
		default:
			werr = ss.reply("502 5.5.2 command not recognized")
		}
		if werr != nil {
			return
		}
	}
}

var errClose = errors.New("close")

func (ss *session) rcpt(arg string) error {
	if !ss.inTx {
		return ss.reply("503 5.5.1 need MAIL")
	}
	dom := domainOf(arg)
	if r := ss.s.roll(dom, true); r != nil {
		ss.s.count(strconv.Itoa(r.Code))
		if err := ss.reply(strconv.Itoa(r.Code) + " " + r.Text); err != nil {
			return err
		}
		if r.Code == 421 { // RFC 5321 §3.8: 421 closes the channel
			ss.flush()
			return errClose
		}
		return nil
	}
	if ss.rcpts == 0 {
		ss.domain = dom
	}
	ss.rcpts++
	return ss.reply("250 2.1.5 Ok")
}

// data reads the message up to the lone dot, then applies the message-level
// rules and replies; a non-nil error ends the session.
func (ss *session) data() error {
	size, mid, ended, err := ss.readHeader()
	if err != nil {
		return err
	}
	if !ended {
		n, err := ss.readBody()
		if err != nil {
			return err
		}
		size += n
	}
	ss.inTx = false
	ss.s.bytes.Add(size)
	e := Entry{Src: ss.src, Conn: ss.id, Domain: ss.domain, Rcpts: ss.rcpts, MID: mid, Size: size}
	if size > ss.s.opts.MaxSize {
		return ss.reply("552 5.3.4 message too big")
	}
	switch r := ss.s.roll(ss.domain, false); {
	case r == nil:
	case r.Kind == Drop:
		ss.s.count("drop")
		e.Time, e.Result = time.Now(), "drop"
		ss.s.record(e)
		return errClose
	case r.Kind == Garbage:
		ss.s.count("garbage")
		e.Time, e.Result = time.Now(), "garbage"
		ss.s.record(e)
		ss.w.WriteString("2x0-\x01garbage\xff\r\n")
		ss.w.Flush()
		return errClose
	case r.Kind == Tarpit:
		ss.s.count("tarpit")
		if !ss.sleep(ss.s.opts.TarpitDelay) {
			return errClose
		}
	}
	e.Time, e.Result = time.Now(), "250"
	ss.s.msgs.Add(1)
	ss.s.rcpts.Add(int64(ss.rcpts))
	ss.s.record(e)
	return ss.reply("250 2.0.0 Ok: queued as " + strconv.FormatUint(ss.id, 36))
}

// readHeader reads header lines one by one, for the Message-ID, up to the
// empty line; ended is set when the data ended inside the header.
func (ss *session) readHeader() (size int64, mid string, ended bool, err error) {
	bol := true
	for {
		ss.c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		chunk, err := ss.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return size, mid, false, err
		}
		full := err == nil
		if bol && full {
			if string(chunk) == ".\r\n" || string(chunk) == ".\n" {
				return size, mid, true, nil
			}
			if len(bytes.TrimRight(chunk, "\r\n")) == 0 {
				return size + int64(len(chunk)), mid, false, nil
			}
			if mid == "" {
				if v, ok := messageID(chunk); ok {
					mid = v
				}
			}
		}
		size += int64(len(chunk))
		bol = full
	}
}

// readBody scans the body in bulk, from the start of a line, for its end:
// ".\r\n" there, or "\n.\r\n" (RFC 5321 §4.1.1.4).
func (ss *session) readBody() (int64, error) {
	if p, err := ss.r.Peek(3); err == nil && string(p) == ".\r\n" {
		ss.r.Discard(3)
		return 0, nil
	}
	var size int64
	for {
		ss.c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		if ss.r.Buffered() < 4 {
			if _, err := ss.r.Peek(4); err != nil {
				return size, err
			}
		}
		chunk, _ := ss.r.Peek(ss.r.Buffered())
		if i := bytes.Index(chunk, []byte("\n.\r\n")); i >= 0 {
			ss.r.Discard(i + 4)
			return size + int64(i+1), nil
		}
		const keep = 3 // the end marker may straddle two reads
		size += int64(len(chunk) - keep)
		ss.r.Discard(len(chunk) - keep)
	}
}
