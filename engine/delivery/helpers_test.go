package delivery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/goleak"

	"github.com/sluice-mta/sluice/engine/reply"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Loopback addresses assigned to this package: 127.10.0.0/16.
const (
	goSMTPIP  = "127.10.0.1" // in-process go-smtp servers, port 0
	rawIP     = "127.10.0.2" // raw scripted servers, port 0
	proxyIP   = "127.10.0.3" // pipelining probes, port 0
	closedTCP = "127.10.0.9:1"
)

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// msg is one message as the go-smtp server received it.
type msg struct {
	From  string
	Mail  smtp.MailOptions
	Rcpts []string
	ROpts []smtp.RcptOptions
	Body  []byte
	TLS   bool
}

// sink is a go-smtp backend that records what it receives and answers from
// a per-recipient script.
type sink struct {
	mu       sync.Mutex
	mailErr  error                             // MAIL reply
	rcptErr  map[string]error                  // RCPT reply per recipient
	dataErr  error                             // reply to the final "."
	onData   func(*smtp.Conn, io.Reader) error // replaces the default body handling
	discard  bool                              // count messages, keep nothing
	msgs     []msg
	count    int
	mails    int      // MAIL commands seen
	resets   int      // RSET (and session resets) seen
	peers    []string // remote IP of each session
	sessions int
}

func (s *sink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions++
	s.peers = append(s.peers, ipOf(c.Conn().RemoteAddr()))
	return &session{s: s, c: c}, nil
}

func (s *sink) snapshot() (msgs []msg, mails int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]msg(nil), s.msgs...), s.mails
}

type session struct {
	s   *sink
	c   *smtp.Conn
	cur msg
}

func (ss *session) Reset() {
	ss.cur = msg{}
	ss.s.mu.Lock()
	ss.s.resets++
	ss.s.mu.Unlock()
}
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.s.mu.Lock()
	ss.s.mails++
	err := ss.s.mailErr
	ss.s.mu.Unlock()
	if err != nil {
		return err
	}
	_, isTLS := ss.c.TLSConnectionState()
	ss.cur = msg{From: from, TLS: isTLS}
	if opts != nil {
		ss.cur.Mail = *opts
	}
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	err := ss.s.rcptErr[to]
	ss.s.mu.Unlock()
	if err != nil {
		return err
	}
	ss.cur.Rcpts = append(ss.cur.Rcpts, to)
	if opts != nil {
		ss.cur.ROpts = append(ss.cur.ROpts, *opts)
	}
	return nil
}

func (ss *session) Data(r io.Reader) error {
	ss.s.mu.Lock()
	onData, dataErr, discard := ss.s.onData, ss.s.dataErr, ss.s.discard
	ss.s.mu.Unlock()
	if onData != nil {
		return onData(ss.c, r)
	}
	if discard {
		io.Copy(io.Discard, r)
		ss.s.mu.Lock()
		ss.s.count++
		ss.s.mu.Unlock()
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(r, 8<<20))
	if err != nil {
		return err
	}
	if dataErr != nil {
		return dataErr
	}
	ss.cur.Body = b
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.cur)
	ss.s.count++
	ss.s.mu.Unlock()
	return nil
}

// startGoSMTP runs an in-process go-smtp server for be on goSMTPIP and
// returns its address. configure may adjust the server before it starts.
func startGoSMTP(t testing.TB, be *sink, configure func(*smtp.Server)) string {
	t.Helper()
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 0
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if configure != nil {
		configure(srv)
	}
	ln, err := net.Listen("tcp", goSMTPIP+":0")
	must(t, err, "listen")
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// selfSigned returns a fresh self-signed certificate for mx.test.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err, "generate key")
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
	must(t, err, "create certificate")
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testConfig is a Config with short timeouts, so a hung test fails fast.
func testConfig() Config {
	return Config{
		Helo:           "vmta1.sluice.test",
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 10 * time.Second,
		DataTimeout:    10 * time.Second,
	}
}

func dialT(t testing.TB, addr string, cfg Config) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), addr, "mx.test", cfg)
	must(t, err, "Dial "+addr)
	t.Cleanup(func() { c.Close() })
	return c
}

// wantReply checks a reply's code and enhanced status.
func wantReply(t testing.TB, what string, got *reply.Error, code int, status string) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: nil reply, want %d %s", what, code, status)
	}
	if got.Code != code || got.Status.String() != status {
		t.Fatalf("%s: got %d %s %q (cause %v), want %d %s", what, got.Code, got.Status, got.Text, got.Err, code, status)
	}
}

// asReply asserts that err is a *reply.Error and returns it.
func asReply(t testing.TB, err error) *reply.Error {
	t.Helper()
	var r *reply.Error
	if !errors.As(err, &r) {
		t.Fatalf("error %v (%T) is not a *reply.Error", err, err)
	}
	return r
}

// rawServer accepts connections on rawIP and runs script on each, closing
// the connection afterwards. It returns the address.
func rawServer(t testing.TB, script func(net.Conn, *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", rawIP+":0")
	must(t, err, "listen")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				script(c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// smtpSink runs Postfix smtp-sink on addr with extra flags and returns a
// function that reports how many messages it has received.
func smtpSink(t testing.TB, addr string, flags ...string) (messages func() int) {
	t.Helper()
	const bin = "/usr/sbin/smtp-sink"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("smtp-sink not installed (apt-get install postfix)")
		}
		t.Fatalf("smtp-sink not installed: %v", err)
	}
	args := append([]string{"-u", "nobody", "-c"}, flags...)
	args = append(args, addr, "100")
	cmd := exec.Command(bin, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	must(t, cmd.Start(), "start smtp-sink")
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink on %s not listening: %v; output: %s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	re := regexp.MustCompile(`mesg=(\d+)`)
	return func() int {
		m := re.FindAllStringSubmatch(out.String(), -1)
		if len(m) == 0 {
			return 0
		}
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return n
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// eventually polls cond for up to 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
