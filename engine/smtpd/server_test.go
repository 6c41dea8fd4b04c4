package smtpd

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestTransactionAndDotStuffing(t *testing.T) {
	b := &recorder{}
	addr, _ := startServer(t, "127.40.1.1", b, nil)
	c := dial(t, addr)
	ehlo := c.cmd("EHLO client.test", "250-mx.test")
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "SIZE 1048576", "SMTPUTF8", "DSN", "AUTH PLAIN LOGIN"} {
		if !strings.Contains(ehlo, "\n250-"+ext) && !strings.Contains(ehlo, "\n250 "+ext) {
			t.Errorf("EHLO lacks %s: %q", ext, ehlo)
		}
	}
	if strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "REQUIRETLS") {
		t.Errorf("EHLO offers TLS extensions without TLS: %q", ehlo)
	}
	c.cmd("MAIL FROM:<a@mail.test> SIZE=100 BODY=8BITMIME", "250 2.1.0")
	c.cmd("RCPT TO:<b@rcpt.test>", "250 2.1.5")
	c.cmd("DATA", "354 ")
	body := "Subject: dots\r\n\r\n..leading dot\r\n.\r\n" // not the end: "." then the final dot below
	c.send(strings.Replace(body, ".\r\n", "..\r\n", 1) + "..\r\nx.\r\n.\r\n")
	c.expect("250 2.0.0")
	c.cmd("VRFY b", "252 2.5.0")
	c.cmd("NOOP", "250 2.0.0")
	c.cmd("QUIT", "221 2.0.0")
	m := b.messages()
	if len(m) != 1 {
		t.Fatalf("%d messages", len(m))
	}
	want := "Subject: dots\r\n\r\n.leading dot\r\n.\r\n.\r\nx.\r\n"
	if m[0].body != want || m[0].from != "a@mail.test" || m[0].mail.Size != 100 || m[0].mail.Body != smtp.Body8BitMIME || m[0].helo != "client.test" {
		t.Errorf("got %+v, body %q want %q", m[0], m[0].body, want)
	}
}

func TestSequenceErrors(t *testing.T) {
	b := &recorder{}
	addr, _ := startServer(t, "127.40.1.2", b, nil)
	c := dial(t, addr)
	c.cmd("MAIL FROM:<a@mail.test>", "503 5.5.1")
	c.cmd("HELO client.test", "250 mx.test")
	c.cmd("RCPT TO:<b@rcpt.test>", "503 5.5.1")
	c.cmd("DATA", "503 5.5.1")
	c.cmd("MAIL FROM:<a@mail.test>", "250")
	c.cmd("MAIL FROM:<a@mail.test>", "503 5.5.1")
	c.cmd("DATA", "503 5.5.1")
	c.cmd("RSET", "250")
	c.cmd("MAIL FROM:<refuse@mail.test>", "550 5.7.1 sender refused")
	r := c.cmd("MAIL FROM:<internal@mail.test>", "451 4.3.0")
	if strings.Contains(r, "pebble") {
		t.Errorf("internal error leaked: %q", r)
	}
	c.cmd("FROB", "500 5.5.2")
	c.cmd("NO\x00OP", "500 5.5.2")
	c.cmd("MAIL FROM:<a@mail.test", "501 5.5.4")
	c.cmd("MAIL TO:<a@mail.test>", "501 5.5.4")
	c.cmd("MAIL FROM:<a@mail.test> FOO=1", "555 5.5.4")
	c.cmd("MAIL FROM:<a@mail.test> SIZE=2000000", "552 5.3.4")
	c.cmd("MAIL FROM:<a@mail.test> SIZE=x", "501 5.5.4")
	c.cmd("MAIL FROM:<a@mail.test> REQUIRETLS", "555 5.5.4") // only over TLS
	c.cmd("MAIL FROM:<dé@mail.test>", "553 5.6.7")
	c.cmd("DATA x", "501")
	c.cmd("QUIT", "221")
}

func TestParameters(t *testing.T) {
	b := &recorder{}
	addr, _ := startServer(t, "127.40.1.3", b, nil)
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<dé@mail.test> SMTPUTF8 RET=HDRS ENVID=QQ+2Bx+3Dy AUTH=<>", "250")
	c.cmd("RCPT TO:<b@rcpt.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bc@rcpt.test", "250")
	c.cmd("RCPT TO:<c@rcpt.test> NOTIFY=NEVER ORCPT=utf-8;\\x{E9}t\\x{E9}@rcpt.test", "250")
	c.cmd("RCPT TO:<d@rcpt.test> NOTIFY=NEVER,DELAY", "501")
	c.cmd("RCPT TO:<d@rcpt.test> ORCPT=rfc822;bad+Z1", "501")
	c.cmd("RCPT TO:<@relay.test,@r2.test:d@rcpt.test>", "250")
	c.cmd("DATA", "354")
	c.send("x\r\n.\r\n")
	c.expect("250")
	m := b.messages()[0]
	if !m.mail.UTF8 || m.mail.Return != smtp.DSNReturnHeaders || m.mail.EnvelopeID != "QQ+x=y" || m.mail.Auth == nil || *m.mail.Auth != "" {
		t.Errorf("mail options %+v", m.mail)
	}
	if n := m.ropts[0].Notify; len(n) != 2 || n[0] != smtp.DSNNotifySuccess || n[1] != smtp.DSNNotifyFailure {
		t.Errorf("notify %v", n)
	}
	if m.ropts[0].OriginalRecipient != "b+c@rcpt.test" || m.ropts[0].OriginalRecipientType != smtp.DSNAddressTypeRFC822 {
		t.Errorf("orcpt %+v", m.ropts[0])
	}
	if m.ropts[1].OriginalRecipient != "été@rcpt.test" || m.ropts[1].OriginalRecipientType != smtp.DSNAddressTypeUTF8 {
		t.Errorf("utf-8 orcpt %+v", m.ropts[1])
	}
	if m.rcpts[2] != "d@rcpt.test" {
		t.Errorf("source route not dropped: %q", m.rcpts[2])
	}
	// Without DSN and SMTPUTF8 the parameters are refused.
	addr2, _ := startServer(t, "127.40.1.3", b, func(s *Server) { s.EnableDSN, s.EnableSMTPUTF8 = false, false })
	c = dial(t, addr2)
	ehlo := c.cmd("EHLO client.test", "250")
	if strings.Contains(ehlo, "DSN") || strings.Contains(ehlo, "SMTPUTF8") {
		t.Errorf("EHLO %q", ehlo)
	}
	c.cmd("MAIL FROM:<a@mail.test> RET=FULL", "555")
	c.cmd("MAIL FROM:<a@mail.test> SMTPUTF8", "555")
	c.cmd("MAIL FROM:<a@mail.test>", "250")
	c.cmd("RCPT TO:<b@rcpt.test> NOTIFY=NEVER", "555")
}

// TestPipeliningBatchesReplies checks RFC 2920: the replies to a pipelined
// group come back in one write, in order.
func TestPipeliningBatchesReplies(t *testing.T) {
	b := &recorder{}
	addr, _ := startServer(t, "127.40.1.4", b, nil)
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.send("MAIL FROM:<a@mail.test>\r\nRCPT TO:<b@rcpt.test>\r\nRCPT TO:<c@rcpt.test>\r\nDATA\r\n")
	time.Sleep(100 * time.Millisecond)
	buf := make([]byte, 4096)
	n, err := c.c.Read(buf)
	must(t, err)
	got := string(buf[:n])
	if strings.Count(got, "\r\n") != 4 || !strings.HasPrefix(got, "250 2.1.0") || !strings.Contains(got, "354 ") {
		t.Fatalf("one read gave %q; want all 4 replies", got)
	}
	// Two whole transactions in one write.
	msg := "MAIL FROM:<a@mail.test>\r\nRCPT TO:<b@rcpt.test>\r\nDATA\r\n"
	c.send("x\r\n.\r\n" + msg + "y\r\n.\r\n" + msg + "z\r\n.\r\n")
	for _, w := range []string{"250", "250", "250", "354", "250", "250", "250", "354", "250"} {
		c.expect(w)
	}
	if got := len(b.messages()); got != 3 {
		t.Fatalf("%d messages, want 3", got)
	}
}

func TestDataLimits(t *testing.T) {
	b := &recorder{}
	addr, _ := startServer(t, "127.40.1.5", b, func(s *Server) { s.MaxMessageBytes = 10000 })
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	txn := func(body, want string) {
		t.Helper()
		c.cmd("MAIL FROM:<a@mail.test>", "250")
		c.cmd("RCPT TO:<b@rcpt.test>", "250")
		c.cmd("DATA", "354")
		c.send(body + ".\r\n")
		c.expect(want)
	}
	txn(strings.Repeat("a", 998)+"\r\n", "250")
	txn(strings.Repeat("a", 999)+"\r\n", "554 5.6.0")
	txn(strings.Repeat("a", 5000)+"\r\nQUIT\r\n", "554 5.6.0") // the tail is data, not commands
	txn(strings.Repeat(strings.Repeat("b", 98)+"\r\n", 101), "552 5.3.4")
	// "\n.\r\n" is not the end of the data (SMTP smuggling).
	txn("a\n.\r\nMAIL FROM:<evil@mail.test>\r\n", "250")
	txn("ok\r\n", "250")
	m := b.messages()
	if len(m) != 3 || !strings.Contains(m[1].body, "MAIL FROM:<evil") {
		t.Fatalf("messages: %d, %+v", len(m), m)
	}
	// A session that stops reading early still leaves the stream in sync.
	b.onData = func(r io.Reader) (string, error) {
		return "", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no thanks"}
	}
	txn(strings.Repeat("line\r\n", 3000), "554 5.7.1 no thanks")
	b.onData = nil
	txn("ok\r\n", "250")
}

func TestBDAT(t *testing.T) {
	b := &recorder{}
	addr, _ := startServer(t, "127.40.1.6", b, func(s *Server) { s.MaxMessageBytes = 100 })
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.send("MAIL FROM:<a@mail.test>\r\nRCPT TO:<b@rcpt.test>\r\nBDAT 5\r\nhel\r\nBDAT 10 LAST\r\n.lo\r\n.\r\n\r\n")
	for _, w := range []string{"250", "250", "250 2.0.0 5 octets", "250 2.0.0 OK"} {
		c.expect(w)
	}
	if m := b.messages(); len(m) != 1 || m[0].body != "hel\r\n.lo\r\n.\r\n\r\n" {
		t.Fatalf("got %+v", m)
	}
	// Without a transaction the chunk is still consumed.
	c.send("BDAT 6\r\nQUIT\r\n")
	c.expect("503 5.5.1")
	c.cmd("MAIL FROM:<a@mail.test>", "250")
	c.cmd("DATA", "503") // no recipient yet
	c.cmd("RCPT TO:<b@rcpt.test>", "250")
	c.send("BDAT 3\r\nabc")
	c.expect("250")
	c.cmd("DATA", "503 5.5.1")
	c.send("BDAT 98 LAST\r\n" + strings.Repeat("x", 98))
	c.expect("552 5.3.4")
	c.cmd("RSET", "250")
	c.cmd("BDAT 1 FOO", "501")
}

func TestShutdownLetsDataFinish(t *testing.T) {
	b := &recorder{}
	addr, srv := startServer(t, "127.40.1.7", b, nil)
	idle := dial(t, addr)
	idle.cmd("EHLO client.test", "250")
	busy := dial(t, addr)
	busy.cmd("EHLO client.test", "250")
	busy.cmd("MAIL FROM:<a@mail.test>", "250")
	busy.cmd("RCPT TO:<b@rcpt.test>", "250")
	busy.cmd("DATA", "354")
	busy.send("Subject: half\r\n")
	time.Sleep(50 * time.Millisecond)
	done := make(chan error)
	go func() { done <- srv.Shutdown(t.Context()) }()
	idle.expect("421 4.3.2")
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("still accepting during shutdown")
	}
	time.Sleep(100 * time.Millisecond)
	busy.send("rest\r\n.\r\n")
	busy.expect("250 2.0.0")
	busy.expect("421 4.3.2")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(b.messages()) != 1 {
		t.Fatal("message lost")
	}
	if b.sessions != b.logouts {
		t.Errorf("%d sessions, %d logouts", b.sessions, b.logouts)
	}
}

func TestTimeoutsAndLimits(t *testing.T) {
	b := &recorder{}
	addr, _ := startServer(t, "127.40.1.8", b, func(s *Server) {
		s.ReadTimeout = 300 * time.Millisecond
		s.MaxRecipients = 2
		s.MaxLineLength = 100
	})
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<a@mail.test>", "250")
	c.cmd("RCPT TO:<a@rcpt.test>", "250")
	c.cmd("RCPT TO:<b@rcpt.test>", "250")
	c.cmd("RCPT TO:<c@rcpt.test>", "452 4.5.3")
	c.cmd("NOOP "+strings.Repeat("x", 200000), "500 5.5.2") // skipped to its end
	c.cmd("NOOP", "250")
	c.expect("421 4.4.2") // idle timeout
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("connection not closed: %v", err)
	}
	// Too many bad commands end the session.
	c = dial(t, addr)
	for i := 0; i < maxErrors-1; i++ {
		c.cmd("BAD", "500")
	}
	c.cmd("BAD", "500")
	c.expect("421 4.7.0")
}

func TestStartTLSAndAuth(t *testing.T) {
	b := &recorder{}
	addr, _ := startServer(t, "127.40.1.9", b, func(s *Server) {
		s.TLSConfig = selfSigned(t)
		s.AllowInsecureAuth = false
	})
	c := dial(t, addr)
	ehlo := c.cmd("EHLO client.test", "250")
	if !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
		t.Fatalf("EHLO in clear: %q", ehlo)
	}
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00user\x00pass")), "538 5.7.11")
	// A command injected after STARTTLS in clear text is discarded.
	c.send("STARTTLS\r\nNOOP\r\n")
	c.expect("220 2.0.0")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"})
	must(t, tc.Handshake())
	c.c, c.br = tc, bufioReader(tc)
	c.cmd("MAIL FROM:<a@mail.test>", "503 5.5.1") // EHLO again first (RFC 3207 §4.2)
	ehlo = c.cmd("EHLO client.test", "250")
	if strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "AUTH PLAIN LOGIN") || !strings.Contains(ehlo, "REQUIRETLS") {
		t.Fatalf("EHLO under TLS: %q", ehlo)
	}
	c.cmd("STARTTLS", "503")
	c.cmd("AUTH CRAM-MD5", "504 5.7.4")
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd("*", "501 5.0.0")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00user\x00wrong")), "535 5.7.8")
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("\x00user\x00pass")), "235 2.7.0")
	c.cmd("AUTH PLAIN =", "503 5.5.1")
	c.cmd("MAIL FROM:<a@mail.test> REQUIRETLS", "250")
	c.cmd("RCPT TO:<b@rcpt.test>", "250")
	c.cmd("DATA", "354")
	c.send("secret\r\n.\r\n")
	c.expect("250")
	m := b.messages()
	if len(m) != 1 || !m[0].tls || !m[0].mail.RequireTLS || m[0].user != "user" {
		t.Fatalf("got %+v", m)
	}
}

// TestSessionErrorsAreReplies checks the error boundary: SMTPError as is,
// anything else 451 4.3.0.
func TestSessionErrorsAreReplies(t *testing.T) {
	b := &recorder{onRcpt: func(to string) error {
		switch to {
		case "multi@rcpt.test":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user\nreally"}
		case "plain@rcpt.test":
			return errors.New("disk full at /var/x")
		case "bye@rcpt.test":
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "go away"}
		}
		return nil
	}}
	addr, _ := startServer(t, "127.40.1.10", b, nil)
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<a@mail.test>", "250")
	if r := c.cmd("RCPT TO:<multi@rcpt.test>", "550-5.1.1 no such user\n550 5.1.1 really"); r == "" {
		t.Fatal()
	}
	if r := c.cmd("RCPT TO:<plain@rcpt.test>", "451 4.3.0"); strings.Contains(r, "/var") {
		t.Errorf("leak: %q", r)
	}
	c.cmd("RCPT TO:<bye@rcpt.test>", "421 4.7.0")
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("421 did not close: %v", err)
	}
}

// TestDotReaderChunking feeds DATA through every split of the input into
// reads, and compares with a straightforward decoder.
func TestDotReaderChunking(t *testing.T) {
	bodies := []string{
		"", "a\r\n", ".\r\n", "..\r\n", "...x\r\n", "a\r\n.b\r\n", "\r\n\r\n.\r\n", "x\n.\r\ny\r\n",
		"long " + strings.Repeat("z", 300) + "\r\n.", "cr\r\r\n.\r\r\n",
	}
	for _, body := range bodies {
		stuffed := strings.ReplaceAll("\r\n"+body, "\r\n.", "\r\n..")[2:]
		if !strings.HasSuffix(stuffed, "\r\n") && stuffed != "" {
			stuffed += "\r\n"
			body += "\r\n"
		}
		wire := stuffed + ".\r\nNEXT"
		for _, bufSize := range []int{16, 17, 19, 64} {
			for _, pSize := range []int{1, 2, 3, 7, 4096} {
				br := bufioReaderSize(&slowReader{s: wire, n: 3}, bufSize)
				var d dotReader
				d.reset(br, 0, 0)
				var out bytes.Buffer
				p := make([]byte, pSize)
				for {
					n, err := d.Read(p)
					out.Write(p[:n])
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("%q: %v", body, err)
					}
				}
				rest, _ := io.ReadAll(br)
				if out.String() != body || string(rest) != "NEXT" {
					t.Fatalf("body %q buf %d p %d: got %q, rest %q", body, bufSize, pSize, out.String(), rest)
				}
			}
		}
	}
}

// slowReader returns at most n bytes per Read.
type slowReader struct {
	s string
	n int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	k := min(len(p), r.n, len(r.s))
	copy(p, r.s[:k])
	r.s = r.s[k:]
	return k, nil
}
