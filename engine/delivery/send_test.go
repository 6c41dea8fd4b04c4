package delivery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

var ctxb = context.Background()

// both runs f against a go-smtp server for be, once pipelined and once in
// lock-step (PIPELINING removed from EHLO by a probe).
func both(t *testing.T, be func() *sink, configure func(*smtp.Server), f func(t *testing.T, c *Conn, be *sink)) {
	for _, pipe := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipe), func(t *testing.T) {
			t.Parallel()
			b := be()
			addr := startGoSMTP(t, b, configure)
			if !pipe {
				addr = startProbe(t, addr, "PIPELINING").addr()
			}
			c := dialT(t, addr, testConfig())
			if c.Has("PIPELINING") != pipe {
				t.Fatalf("Has(PIPELINING) = %v", !pipe)
			}
			f(t, c, b)
		})
	}
}

func rcpts(addrs ...string) []Rcpt {
	var rs []Rcpt
	for _, a := range addrs {
		rs = append(rs, Rcpt{Addr: a})
	}
	return rs
}

func TestSendBody(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, in, want string }{
		{"crlf", "Subject: x\r\n\r\nhello\r\n", "Subject: x\r\n\r\nhello\r\n"},
		{"dots", ".\r\n..two\r\n.x\r\nmid.dle\r\n", ".\r\n..two\r\n.x\r\nmid.dle\r\n"},
		{"bare lf", "a\nb\n\nc\n", "a\r\nb\r\n\r\nc\r\n"},
		{"no final newline", "a\r\nlast", "a\r\nlast\r\n"},
		{"lone dot last", "a\r\n.", "a\r\n.\r\n"},
		{"empty", "", ""},
	}
	both(t, func() *sink { return &sink{} }, nil, func(t *testing.T, c *Conn, be *sink) {
		for i, tc := range cases {
			res, err := c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("b@dst.test", "c@dst.test")}, []byte(tc.in))
			must(t, err, tc.name)
			wantReply(t, tc.name+" rcpt 0", res[0], 250, "2.0.0")
			wantReply(t, tc.name+" rcpt 1", res[1], 250, "2.0.0")
			msgs, _ := be.snapshot()
			if got := string(msgs[i].Body); got != tc.want {
				t.Errorf("%s: server got %q, want %q", tc.name, got, tc.want)
			}
			if msgs[i].Mail.Size != int64(len(tc.in)) || !slices.Equal(msgs[i].Rcpts, []string{"b@dst.test", "c@dst.test"}) {
				t.Errorf("%s: SIZE=%d rcpts %v", tc.name, msgs[i].Mail.Size, msgs[i].Rcpts)
			}
		}
		if c.Sent() != len(cases) {
			t.Errorf("Sent() = %d, want %d", c.Sent(), len(cases))
		}
		res, err := c.Send(ctxb, Envelope{From: "a@src.test"}, []byte("x"))
		if err != nil || len(res) != 0 {
			t.Errorf("Send without recipients = %v, %v", res, err)
		}
	})
}

// TestSendRcptMixed: one recipient accepted, others refused; 552 is read
// as 452.
func TestSendRcptMixed(t *testing.T) {
	t.Parallel()
	mk := func() *sink {
		return &sink{rcptErr: map[string]error{
			"bad@dst.test":  &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
			"full@dst.test": &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "over quota"},
			"busy@dst.test": &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "try later"},
		}}
	}
	both(t, mk, nil, func(t *testing.T, c *Conn, be *sink) {
		res, err := c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("ok@dst.test", "bad@dst.test", "full@dst.test", "busy@dst.test")}, []byte("hi\r\n"))
		must(t, err, "Send")
		wantReply(t, "ok", res[0], 250, "2.0.0")
		wantReply(t, "bad", res[1], 550, "5.1.1")
		wantReply(t, "full", res[2], 452, "4.2.2")
		wantReply(t, "busy", res[3], 450, "4.2.1")
		if res[1].Text != "no such user" {
			t.Errorf("text = %q", res[1].Text)
		}
		msgs, _ := be.snapshot()
		if len(msgs) != 1 || !slices.Equal(msgs[0].Rcpts, []string{"ok@dst.test"}) {
			t.Fatalf("server got %+v", msgs)
		}
	})
}

// TestSendNoRcptAccepted: no body goes out, RSET follows, and the Conn
// carries the next transaction.
func TestSendNoRcptAccepted(t *testing.T) {
	t.Parallel()
	mk := func() *sink {
		return &sink{rcptErr: map[string]error{
			"bad@dst.test": &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"},
			"tmp@dst.test": &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"},
		}}
	}
	both(t, mk, nil, func(t *testing.T, c *Conn, be *sink) {
		res, err := c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("bad@dst.test", "tmp@dst.test")}, []byte("hi\r\n"))
		must(t, err, "Send")
		wantReply(t, "bad", res[0], 550, "5.1.1")
		wantReply(t, "tmp", res[1], 451, "4.3.0")
		res, err = c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("ok@dst.test")}, []byte("hi\r\n"))
		must(t, err, "second Send")
		wantReply(t, "ok", res[0], 250, "2.0.0")
		msgs, mails := be.snapshot()
		if len(msgs) != 1 || mails != 2 || c.Sent() != 1 {
			t.Fatalf("messages %d, MAILs %d, Sent() %d", len(msgs), mails, c.Sent())
		}
	})
}

// TestSendMailRefused: every recipient gets the MAIL reply, not the RCPT
// replies that follow it in a pipelined group.
func TestSendMailRefused(t *testing.T) {
	t.Parallel()
	mk := func() *sink {
		return &sink{mailErr: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender blocked"}}
	}
	both(t, mk, nil, func(t *testing.T, c *Conn, be *sink) {
		res, err := c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test", "y@dst.test")}, []byte("hi\r\n"))
		must(t, err, "Send")
		wantReply(t, "x", res[0], 550, "5.7.1")
		wantReply(t, "y", res[1], 550, "5.7.1")
		be.mu.Lock()
		be.mailErr = nil
		be.mu.Unlock()
		res, err = c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test")}, []byte("hi\r\n"))
		must(t, err, "second Send")
		wantReply(t, "x", res[0], 250, "2.0.0")
	})
}

// TestSendDataReplies: 4xx and 5xx to the final dot reach the accepted
// recipients, refused ones keep their RCPT reply, the Conn stays usable.
func TestSendDataReplies(t *testing.T) {
	t.Parallel()
	mk := func() *sink {
		return &sink{rcptErr: map[string]error{"bad@dst.test": &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}}}
	}
	both(t, mk, nil, func(t *testing.T, c *Conn, be *sink) {
		for _, tc := range []struct {
			err    *smtp.SMTPError
			code   int
			status string
		}{
			{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "disk full"}, 451, "4.3.0"},
			{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "spam"}, 554, "5.7.1"},
			{nil, 250, "2.0.0"},
		} {
			be.mu.Lock()
			be.dataErr = nil
			if tc.err != nil {
				be.dataErr = tc.err
			}
			be.mu.Unlock()
			res, err := c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("ok@dst.test", "bad@dst.test", "ok2@dst.test")}, []byte("hi\r\n"))
			must(t, err, fmt.Sprint("Send ", tc.code))
			wantReply(t, "ok", res[0], tc.code, tc.status)
			wantReply(t, "bad", res[1], 550, "5.1.1")
			wantReply(t, "ok2", res[2], tc.code, tc.status)
		}
		if c.Sent() != 3 {
			t.Fatalf("Sent() = %d", c.Sent())
		}
	})
}

// TestSendResetMidData: the server resets the connection while the body
// is on its way.
func TestSendResetMidData(t *testing.T) {
	t.Parallel()
	be := &sink{onData: func(c *smtp.Conn, r io.Reader) error {
		io.ReadFull(r, make([]byte, 4096))
		if tc, ok := c.Conn().(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, not FIN
		}
		c.Conn().Close()
		return errors.New("reset")
	}}
	addr := startGoSMTP(t, be, nil)
	c := dialT(t, addr, testConfig())
	body := []byte(strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n", 30000))
	res, err := c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test", "y@dst.test")}, body)
	if err == nil {
		t.Fatal("Send: err == nil after reset")
	}
	wantReply(t, "err", asReply(t, err), 451, "4.4.2")
	wantReply(t, "x", res[0], 451, "4.4.2")
	wantReply(t, "y", res[1], 451, "4.4.2")
	if res[0].Err == nil {
		t.Error("no cause wrapped")
	}
	res, err = c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test")}, body)
	if err == nil || res[0] == nil || res[0].Code != 451 {
		t.Fatalf("Send on broken Conn = %v, %v", res, err)
	}
}

// TestSendContextDeadline: the server sits on the final dot; the context's
// deadline ends the wait.
func TestSendContextDeadline(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	be := &sink{onData: func(c *smtp.Conn, r io.Reader) error {
		io.Copy(io.Discard, r)
		<-release
		return nil
	}}
	addr := startGoSMTP(t, be, nil)
	t.Cleanup(func() { close(release) }) // runs before the server's cleanup
	c := dialT(t, addr, testConfig())
	ctx, cancel := context.WithTimeout(ctxb, 300*time.Millisecond)
	defer cancel()
	res, err := c.Send(ctx, Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test")}, []byte("hi\r\n"))
	wantReply(t, "err", asReply(t, err), 451, "4.4.2")
	wantReply(t, "x", res[0], 451, "4.4.2")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cause %v is not DeadlineExceeded", res[0].Err)
	}
}

func TestSendDSN(t *testing.T) {
	t.Parallel()
	env := Envelope{
		From:  "a@src.test",
		EnvID: "q+1=x",
		Ret:   "hdrs",
		Rcpts: []Rcpt{
			{Addr: "x@dst.test", Notify: "success,failure", ORcpt: "rfc822;orig+tag@example.org"},
			{Addr: "y@dst.test", Notify: "NEVER", ORcpt: "plain@example.org"},
			{Addr: "z@dst.test", Notify: "bogus", ORcpt: "utf-8;jö@example.org"},
		},
	}
	for _, dsn := range []bool{true, false} {
		t.Run(fmt.Sprint("DSN=", dsn), func(t *testing.T) {
			t.Parallel()
			be := &sink{}
			addr := startGoSMTP(t, be, func(s *smtp.Server) { s.EnableDSN = dsn })
			c := dialT(t, addr, testConfig())
			res, err := c.Send(ctxb, env, []byte("hi\r\n"))
			must(t, err, "Send")
			for i, r := range res {
				wantReply(t, fmt.Sprint("rcpt ", i), r, 250, "2.0.0")
			}
			msgs, _ := be.snapshot()
			m := msgs[0]
			if !dsn {
				if m.Mail.Return != "" || m.Mail.EnvelopeID != "" || m.ROpts[0].Notify != nil || m.ROpts[0].OriginalRecipient != "" {
					t.Fatalf("DSN parameters sent without DSN: %+v %+v", m.Mail, m.ROpts)
				}
				return
			}
			if m.Mail.Return != smtp.DSNReturnHeaders || m.Mail.EnvelopeID != "q+1=x" {
				t.Errorf("RET=%q ENVID=%q", m.Mail.Return, m.Mail.EnvelopeID)
			}
			want := []struct {
				notify []smtp.DSNNotify
				typ    smtp.DSNAddressType
				addr   string
			}{
				{[]smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}, smtp.DSNAddressTypeRFC822, "orig+tag@example.org"},
				{[]smtp.DSNNotify{smtp.DSNNotifyNever}, smtp.DSNAddressTypeRFC822, "plain@example.org"},
				{nil, smtp.DSNAddressTypeUTF8, "jö@example.org"},
			}
			for i, w := range want {
				o := m.ROpts[i]
				if !slices.Equal(o.Notify, w.notify) || o.OriginalRecipientType != w.typ || o.OriginalRecipient != w.addr {
					t.Errorf("rcpt %d: NOTIFY=%v ORCPT=%s;%s, want %v %s;%s", i, o.Notify, o.OriginalRecipientType, o.OriginalRecipient, w.notify, w.typ, w.addr)
				}
			}
		})
	}
}

func TestSend8BitMIME(t *testing.T) {
	t.Parallel()
	body := []byte("Subject: caf\xc3\xa9\r\n\r\ncaf\xc3\xa9\r\n")
	env := Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test", "y@dst.test"), Body8Bit: true}

	be := &sink{}
	addr := startGoSMTP(t, be, nil)
	c := dialT(t, addr, testConfig())
	res, err := c.Send(ctxb, env, body)
	must(t, err, "Send")
	wantReply(t, "x", res[0], 250, "2.0.0")
	if msgs, _ := be.snapshot(); msgs[0].Mail.Body != smtp.Body8BitMIME || string(msgs[0].Body) != string(body) {
		t.Fatalf("BODY=%q body %q", msgs[0].Mail.Body, msgs[0].Body)
	}

	be2 := &sink{}
	c2 := dialT(t, startProbe(t, startGoSMTP(t, be2, nil), "8BITMIME").addr(), testConfig())
	res, err = c2.Send(ctxb, env, body)
	must(t, err, "Send without 8BITMIME")
	wantReply(t, "x", res[0], 554, "5.6.3")
	wantReply(t, "y", res[1], 554, "5.6.3")
	if _, mails := be2.snapshot(); mails != 0 {
		t.Fatalf("MAIL sent to a server without 8BITMIME")
	}
}

func TestSendSMTPUTF8(t *testing.T) {
	t.Parallel()
	utf := Envelope{From: "jö@src.test", Rcpts: rcpts("ü@dst.test", "x@dst.test"), SMTPUTF8: true}
	flagged := Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test"), SMTPUTF8: true}
	ascii := []byte("Subject: plain\r\n\r\nbody caf\xc3\xa9\r\n")
	utfHeader := []byte("Subject: caf\xc3\xa9\r\n\r\nbody\r\n")

	be := &sink{}
	c := dialT(t, startGoSMTP(t, be, func(s *smtp.Server) { s.EnableSMTPUTF8 = true }), testConfig())
	res, err := c.Send(ctxb, utf, ascii)
	must(t, err, "Send")
	wantReply(t, "ü", res[0], 250, "2.0.0")
	msgs, _ := be.snapshot()
	if !msgs[0].Mail.UTF8 || msgs[0].From != "jö@src.test" || msgs[0].Rcpts[0] != "ü@dst.test" {
		t.Fatalf("server got %+v", msgs[0])
	}

	be2 := &sink{}
	c2 := dialT(t, startGoSMTP(t, be2, nil), testConfig())
	for _, tc := range []struct {
		name string
		env  Envelope
		body []byte
		code int
	}{
		{"utf-8 envelope", utf, ascii, 553},
		{"utf-8 header", flagged, utfHeader, 553},
		{"flagged but ascii", flagged, ascii, 250},
	} {
		res, err := c2.Send(ctxb, tc.env, tc.body)
		must(t, err, tc.name)
		if res[0].Code != tc.code || (tc.code == 553 && res[0].Status.String() != "5.6.7") {
			t.Errorf("%s: %v, want %d", tc.name, res[0], tc.code)
		}
	}
	if msgs, mails := be2.snapshot(); mails != 1 || msgs[0].Mail.UTF8 {
		t.Fatalf("server without SMTPUTF8 saw %d MAILs", mails)
	}
}

func TestSendSizeLimit(t *testing.T) {
	t.Parallel()
	be := &sink{}
	c := dialT(t, startGoSMTP(t, be, func(s *smtp.Server) { s.MaxMessageBytes = 1000 }), testConfig())
	res, err := c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test")}, make([]byte, 5000))
	must(t, err, "Send")
	wantReply(t, "too big", res[0], 552, "5.3.4")
	res, err = c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test"), Size: 900}, []byte("small\r\n"))
	must(t, err, "Send")
	wantReply(t, "small", res[0], 250, "2.0.0")
	if msgs, mails := be.snapshot(); mails != 1 || msgs[0].Mail.Size != 900 {
		t.Fatalf("MAILs %d, SIZE=%d", mails, msgs[0].Mail.Size)
	}
}

// TestSendBadAddresses: addresses that would inject commands never reach
// the wire.
func TestSendBadAddresses(t *testing.T) {
	t.Parallel()
	be := &sink{}
	c := dialT(t, startGoSMTP(t, be, nil), testConfig())
	res, err := c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test>\r\nRSET", "ok@dst.test", "a\x00@b")}, []byte("hi\r\n"))
	must(t, err, "Send")
	wantReply(t, "injection", res[0], 553, "5.1.3")
	wantReply(t, "ok", res[1], 250, "2.0.0")
	wantReply(t, "nul", res[2], 553, "5.1.3")
	res, err = c.Send(ctxb, Envelope{From: "a@src\r\n.test", Rcpts: rcpts("ok@dst.test")}, []byte("hi\r\n"))
	must(t, err, "Send")
	wantReply(t, "bad sender", res[0], 553, "5.1.7")
	res, err = c.Send(ctxb, Envelope{From: "", Rcpts: rcpts("ok@dst.test")}, []byte("hi\r\n"))
	must(t, err, "Send null sender")
	wantReply(t, "null sender", res[0], 250, "2.0.0")
	if msgs, mails := be.snapshot(); mails != 2 || msgs[1].From != "" {
		t.Fatalf("MAILs %d", mails)
	}
}

// TestSendDataAcceptedWithoutRcpts: a server that answers 354 to a
// pipelined DATA although it refused every RCPT gets a lone "." and no body
// (RFC 2920 §3.1), and the session stays in step.
func TestSendDataAcceptedWithoutRcpts(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		fmt.Fprint(c, "220 raw.test\r\n")
		var afterData []string
		inData := false
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if inData {
				afterData = append(afterData, line)
				if line == ".\r\n" {
					inData = false
					fmt.Fprint(c, "554 5.5.1 no valid recipients\r\n")
				}
				continue
			}
			switch verb := strings.ToUpper(strings.Fields(line)[0]); verb {
			case "EHLO":
				fmt.Fprint(c, "250-raw.test\r\n250 PIPELINING\r\n")
			case "MAIL":
				fmt.Fprint(c, "250 2.1.0 ok\r\n")
			case "RCPT":
				fmt.Fprint(c, "550 5.1.1 unknown\r\n")
			case "DATA":
				fmt.Fprint(c, "354 go ahead\r\n")
				inData = true
			case "QUIT":
				fmt.Fprint(c, "221 bye\r\n")
				got <- strings.Join(afterData, "")
				return
			default:
				fmt.Fprintf(c, "250 %s ok\r\n", verb)
			}
		}
	})
	c := dialT(t, addr, testConfig())
	res, err := c.Send(ctxb, Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test")}, []byte("secret body\r\n"))
	must(t, err, "Send")
	wantReply(t, "x", res[0], 550, "5.1.1")
	if c.Sent() != 0 {
		t.Errorf("Sent() = %d", c.Sent())
	}
	must(t, c.Quit(), "Quit")
	select {
	case s := <-got:
		if s != ".\r\n" {
			t.Fatalf("after 354 the server got %q, want a lone dot", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server never saw QUIT in step")
	}
}
