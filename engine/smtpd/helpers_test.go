package smtpd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Tests use 127.40.0.0/16: servers on 127.40.N.1, port 0.

// message is one transaction as the test backend saw it.
type message struct {
	from  string
	mail  smtp.MailOptions
	rcpts []string
	ropts []smtp.RcptOptions
	body  string
	helo  string
	tls   bool
	user  string
}

// recorder is a Backend that keeps every accepted message. Its hooks can
// refuse steps.
type recorder struct {
	mu       sync.Mutex
	msgs     []message
	sessions int
	logouts  int
	onRcpt   func(to string) error
	onData   func(r io.Reader) (string, error) // replaces reading the body
}

func (b *recorder) NewSession(c *Conn) (Session, error) {
	b.mu.Lock()
	b.sessions++
	b.mu.Unlock()
	_, isTLS := c.TLSConnectionState()
	return &recSession{b: b, helo: c.Hostname(), tls: isTLS}, nil
}

func (b *recorder) messages() []message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]message(nil), b.msgs...)
}

type recSession struct {
	b    *recorder
	helo string
	tls  bool
	user string
	cur  *message
}

func (s *recSession) Reset() { s.cur = nil }
func (s *recSession) Logout() error {
	s.b.mu.Lock()
	s.b.logouts++
	s.b.mu.Unlock()
	return nil
}

func (s *recSession) Mail(from string, opts *smtp.MailOptions) error {
	if from == "refuse@mail.test" {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"}
	}
	if from == "internal@mail.test" {
		return errors.New("pebble: /var/spool/secret exploded")
	}
	s.cur = &message{from: from, mail: *opts, helo: s.helo, tls: s.tls, user: s.user}
	return nil
}

func (s *recSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.b.onRcpt != nil {
		if err := s.b.onRcpt(to); err != nil {
			return err
		}
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	s.cur.ropts = append(s.cur.ropts, *opts)
	return nil
}

func (s *recSession) Data(r io.Reader) error {
	var body string
	if s.b.onData != nil {
		var err error
		if body, err = s.b.onData(r); err != nil {
			return err
		}
	} else {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		body = string(b)
	}
	m := *s.cur
	m.body = body
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, m)
	s.b.mu.Unlock()
	return nil
}

func (s *recSession) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (s *recSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user == "user" && pass == "pass" {
			s.user = user
			return nil
		}
		return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
	}), nil
}

// startServer runs srv (with b as its backend) on ip:0 and returns the
// address; the server is shut down at the end of the test.
func startServer(t testing.TB, ip string, b Backend, mod func(*Server)) (string, *Server) {
	t.Helper()
	srv := &Server{Backend: b, Domain: "mx.test", MaxMessageBytes: 1 << 20, MaxDataLineLength: 998,
		EnableSMTPUTF8: true, EnableDSN: true, EnableREQUIRETLS: true, AllowInsecureAuth: true}
	if mod != nil {
		mod(srv)
	}
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String(), srv
}

// client is a raw SMTP client for the tests.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	cl.expect("220 ")
	return cl
}

// read returns a whole reply, lines joined by "\n".
func (c *client) read() string {
	c.t.Helper()
	var all []string
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply: %v (so far %q)", err, all)
		}
		all = append(all, strings.TrimRight(line, "\r\n"))
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(all, "\n")
		}
	}
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	r := c.read()
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("got %q, want prefix %q", r, prefix)
	}
	return r
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) cmd(line, want string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(want)
}

// selfSigned returns a server TLS config for mx.test.
func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.test"},
		DNSNames:     []string{"mx.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func bufioReader(r io.Reader) *bufio.Reader            { return bufio.NewReader(r) }
func bufioReaderSize(r io.Reader, n int) *bufio.Reader { return bufio.NewReaderSize(r, n) }
