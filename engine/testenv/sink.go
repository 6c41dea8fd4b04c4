package testenv

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// SinkOptions shapes a Sink's answers. Zero values accept everything.
type SinkOptions struct {
	Hostname string // banner and EHLO name ["sink.test"]
	// RcptReply decides the reply to RCPT TO; attempt counts RCPT commands
	// for that address (case-insensitive), starting at 1. A code of 0 or 2xx
	// accepts. nil accepts every recipient.
	RcptReply func(rcpt string, attempt int) (code int, enh, text string)
	// DataReply decides the reply after the final dot; attempt counts DATA
	// completions for the message's Message-ID, starting at 1. A code of 0
	// or 2xx accepts and records the message.
	DataReply func(m *Message, attempt int) (code int, enh, text string)
	// Delay is waited before answering the final dot.
	Delay time.Duration
	// MaxMessageBytes caps DATA (SIZE is advertised) [unset: no limit].
	MaxMessageBytes int64
	// TLSConfig, when set, makes the sink offer STARTTLS with it. (After
	// STARTTLS a session's QUIT is not seen: it counts in MaxConcurrent
	// until it ends.)
	TLSConfig *tls.Config
	// RequireTLS advertises REQUIRETLS (RFC 8689) after STARTTLS.
	RequireTLS bool
}

// Message is one message a Sink accepted.
type Message struct {
	From       string
	Rcpts      []string
	Data       []byte
	MessageID  string // the Message-ID header, angle brackets included
	RemoteIP   string // the client's address: the daemon's source IP
	Helo       string // the client's EHLO/HELO name
	ConnID     int    // sessions are numbered from 1; equal ids share a connection
	TLS        bool   // the message came over TLS (STARTTLS)
	RequireTLS bool   // MAIL FROM carried REQUIRETLS
	Time       time.Time
}

// Sink is a realistic SMTP receiver on go-smtp (which advertises
// PIPELINING and ENHANCEDSTATUSCODES) that records what it accepts.
type Sink struct {
	Addr string
	opts SinkOptions
	srv  *smtp.Server
	l    net.Listener
	done chan struct{} // closed when Serve returns

	mu         sync.Mutex
	msgs       []*Message
	rcptTries  map[string][]time.Time // lower-cased rcpt → time of each RCPT
	dataTries  map[string]int         // Message-ID → DATA completions
	conns      int
	active     int
	maxActive  int
	closedOnce sync.Once
}

// StartSink listens on addr (e.g. "127.20.1.1:25") and serves until the test
// ends.
func StartSink(tb testing.TB, addr string, opts SinkOptions) *Sink {
	tb.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("sink listen %s: %v", addr, err)
	}
	s := &Sink{
		Addr:      l.Addr().String(),
		opts:      opts,
		l:         l,
		done:      make(chan struct{}),
		rcptTries: map[string][]time.Time{},
		dataTries: map[string]int{},
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = or(opts.Hostname, "sink.test")
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.MaxRecipients = 1000
	srv.TLSConfig = opts.TLSConfig
	srv.EnableREQUIRETLS = opts.RequireTLS
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv = srv
	// Owned by the Sink: ends when Close closes the listener.
	go func() {
		defer close(s.done)
		srv.Serve(quitListener{l})
	}()
	tb.Cleanup(s.Close)
	return s
}

// Close stops the sink and closes its sessions; it is idempotent.
func (s *Sink) Close() {
	s.closedOnce.Do(func() {
		s.srv.Close()
		s.l.Close() // Serve may not have registered it with srv yet
		<-s.done
		// go-smtp does not wait for its session goroutines; give the ones
		// Close just cut off a moment to run Logout.
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
			s.mu.Lock()
			active := s.active
			s.mu.Unlock()
			if active == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func (s *Sink) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	s.conns++
	s.active++
	s.maxActive = max(s.maxActive, s.active)
	id := s.conns
	s.mu.Unlock()
	ip := ""
	if a, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		ip = a.IP.String()
	}
	ss := &sinkSession{s: s, c: c, id: id, ip: ip}
	if qc, ok := c.Conn().(*quitConn); ok {
		qc.setOnQuit(ss.release)
	}
	return ss, nil
}

type sinkSession struct {
	once   sync.Once
	s      *Sink
	c      *smtp.Conn
	id     int
	ip     string
	from   string
	rcpts  []string
	reqTLS bool
}

func (ss *sinkSession) Reset() { ss.from, ss.rcpts = "", nil }

func (ss *sinkSession) Logout() error {
	ss.release()
	return nil
}

// release ends the session's count in MaxConcurrent, once: at QUIT, or at
// Logout for a session that ends without one.
func (ss *sinkSession) release() {
	ss.once.Do(func() {
		ss.s.mu.Lock()
		ss.s.active--
		ss.s.mu.Unlock()
	})
}

func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.from, ss.rcpts = from, nil
	ss.reqTLS = opts != nil && opts.RequireTLS
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s := ss.s
	key := strings.ToLower(to)
	s.mu.Lock()
	s.rcptTries[key] = append(s.rcptTries[key], time.Now())
	attempt := len(s.rcptTries[key])
	s.mu.Unlock()
	if s.opts.RcptReply != nil {
		if err := smtpErr(s.opts.RcptReply(to, attempt)); err != nil {
			return err
		}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	s := ss.s
	data, err := io.ReadAll(r)
	if err != nil {
		return err // go-smtp answers a too-large message with 552
	}
	m := &Message{
		From:      ss.from,
		Rcpts:     append([]string(nil), ss.rcpts...),
		Data:      data,
		MessageID: MessageID(data),
		RemoteIP:  ss.ip,
		Helo:      ss.c.Hostname(),
		ConnID:    ss.id,
		Time:      time.Now(),
	}
	_, m.TLS = ss.c.TLSConnectionState()
	m.RequireTLS = ss.reqTLS
	s.mu.Lock()
	s.dataTries[m.MessageID]++
	attempt := s.dataTries[m.MessageID]
	s.mu.Unlock()
	if s.opts.Delay > 0 {
		time.Sleep(s.opts.Delay)
	}
	if s.opts.DataReply != nil {
		if err := smtpErr(s.opts.DataReply(m, attempt)); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	return nil
}

// smtpErr turns a scripted reply into a go-smtp error; nil accepts.
func smtpErr(code int, enh, text string) error {
	if code == 0 || code/100 == 2 {
		return nil
	}
	ec := smtp.NoEnhancedCode
	if enh != "" {
		var st [3]int
		parts := strings.Split(enh, ".")
		ok := len(parts) == 3
		for i := 0; ok && i < 3; i++ {
			n, err := atoi(parts[i])
			st[i], ok = n, err == nil
		}
		if ok {
			ec = smtp.EnhancedCode(st)
		}
	}
	if text == "" {
		text = "scripted reply"
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: text}
}

func atoi(s string) (int, error) {
	n := 0
	if s == "" || len(s) > 3 {
		return 0, errors.New("bad number")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("bad number")
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

// Count returns how many messages were accepted.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Messages returns the accepted messages, oldest first.
func (s *Sink) Messages() []*Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Message(nil), s.msgs...)
}

// MessageIDs counts accepted messages by Message-ID header: a value above 1
// is a duplicate delivery.
func (s *Sink) MessageIDs() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.msgs))
	for _, msg := range s.msgs {
		m[msg.MessageID]++
	}
	return m
}

// RcptAttempts returns when each RCPT TO for addr (case-insensitive) came.
func (s *Sink) RcptAttempts(addr string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.rcptTries[strings.ToLower(addr)]...)
}

// Connections returns how many SMTP sessions were opened.
func (s *Sink) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// MaxConcurrent returns the most sessions open at one time.
func (s *Sink) MaxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxActive
}

// WaitCount waits until at least n messages were accepted; it fails tb after
// timeout.
func (s *Sink) WaitCount(tb testing.TB, n int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for s.Count() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("sink %s: %d of %d messages after %v", s.Addr, s.Count(), n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
