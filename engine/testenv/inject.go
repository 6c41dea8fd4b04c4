package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Injector submits messages over one SMTP session that it reuses, redialing
// after an error. It is not safe for concurrent use: give each client
// goroutine its own.
type Injector struct {
	Addr    string
	LocalIP string      // source address to dial from; "" lets the kernel choose
	Helo    string      // ["injector.test"]
	Auth    sasl.Client // AUTH before the first message when set
	Timeout time.Duration

	c *smtp.Client
}

// NewInjector returns an Injector for the daemon listening on addr.
func NewInjector(addr string) *Injector {
	return &Injector{Addr: addr, Helo: "injector.test", Timeout: 30 * time.Second}
}

func (in *Injector) dial() error {
	d := net.Dialer{Timeout: in.Timeout}
	if in.LocalIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(in.LocalIP)}
	}
	conn, err := d.Dial("tcp", in.Addr)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = in.Timeout
	c.SubmissionTimeout = in.Timeout
	if err := c.Hello(or(in.Helo, "injector.test")); err != nil {
		c.Close()
		return err
	}
	if in.Auth != nil {
		if err := c.Auth(in.Auth); err != nil {
			c.Close()
			return err
		}
	}
	in.c = c
	return nil
}

// Send submits msg to the recipients. A nil error means the daemon answered
// 250 to the final dot, i.e. it has taken responsibility for the message.
// An SMTP rejection comes back as *smtp.SMTPError.
func (in *Injector) Send(from string, to []string, msg []byte) error {
	if in.c == nil {
		if err := in.dial(); err != nil {
			return err
		}
	}
	err := in.send(from, to, msg)
	var se *smtp.SMTPError
	if err != nil && !errors.As(err, &se) {
		in.Close() // a broken session: redial next time
	} else if err != nil {
		in.c.Reset() // a rejection: the session stays usable
	}
	return err
}

func (in *Injector) send(from string, to []string, msg []byte) error {
	if err := in.c.Mail(from, nil); err != nil {
		return err
	}
	for _, rcpt := range to {
		if err := in.c.Rcpt(rcpt, nil); err != nil {
			return err
		}
	}
	w, err := in.c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// Close quits the session, if any.
func (in *Injector) Close() error {
	if in.c == nil {
		return nil
	}
	c := in.c
	in.c = nil
	c.Quit()
	return c.Close()
}

// Inject submits one message over a new session to addr and quits.
func Inject(tb testing.TB, addr, from string, to []string, msg []byte) error {
	tb.Helper()
	in := NewInjector(addr)
	defer in.Close()
	return in.Send(from, to, msg)
}

// GenMessage returns a message of about size bytes (at least its headers)
// addressed to rcpt, with CRLF line endings and a Message-ID unique to this
// call: "<i.RANDOM@testenv.sluice>".
func GenMessage(i, size int, rcpt string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender <sender@testenv.sluice>\r\n")
	fmt.Fprintf(&b, "To: <%s>\r\n", rcpt)
	fmt.Fprintf(&b, "Subject: test message %d\r\n", i)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", NewMessageID(i))
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	const line = "The quick brown fox jumps over the lazy dog 0123456789.\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}

// NewMessageID returns "<i.RANDOM@testenv.sluice>", unique across runs.
func NewMessageID(i int) string {
	var r [8]byte
	rand.Read(r[:])
	return fmt.Sprintf("<%d.%s@testenv.sluice>", i, hex.EncodeToString(r[:]))
}

// PlainAuth returns a SASL PLAIN client for Injector.Auth.
func PlainAuth(user, password string) sasl.Client {
	return sasl.NewPlainClient("", user, password)
}

// ReplyCode extracts the SMTP code and enhanced status ("5.1.1") of an
// error returned by Injector.Send; code is 0 for a non-SMTP error.
func ReplyCode(err error) (code int, enh string) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return 0, ""
	}
	e := se.EnhancedCode
	if e == smtp.NoEnhancedCode || e == smtp.EnhancedCodeNotSet {
		return se.Code, ""
	}
	return se.Code, fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}
