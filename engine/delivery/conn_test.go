package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestDialExtensions(t *testing.T) {
	t.Parallel()
	addr := startGoSMTP(t, &sink{}, func(s *smtp.Server) {
		s.EnableDSN = true
		s.EnableSMTPUTF8 = true
		s.MaxMessageBytes = 12345
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	})
	c := dialT(t, addr, testConfig()) // UseStartTLS off
	ext := c.Extensions()
	for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "DSN", "SIZE", "STARTTLS"} {
		if !slices.Contains(ext, want) || !c.Has(strings.ToLower(want)) {
			t.Errorf("extension %s missing from %v", want, ext)
		}
	}
	if ext[0] != "PIPELINING" {
		t.Errorf("Extensions() not in server order: %v", ext)
	}
	if c.MaxSize() != 12345 || c.Param("SIZE") != "12345" {
		t.Errorf("MaxSize() = %d, Param(SIZE) = %q", c.MaxSize(), c.Param("SIZE"))
	}
	if _, _, ok := c.TLS(); ok {
		t.Error("TLS() ok without UseStartTLS")
	}
	if c.RemoteHost() != "mx.test" || c.RemoteIP() != goSMTPIP {
		t.Errorf("RemoteHost() = %q, RemoteIP() = %q", c.RemoteHost(), c.RemoteIP())
	}
	must(t, c.Quit(), "Quit")
	must(t, c.Quit(), "second Quit") // closing twice is harmless
}

func TestStartTLS(t *testing.T) {
	t.Parallel()
	be := &sink{}
	addr := startGoSMTP(t, be, func(s *smtp.Server) {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	})
	cfg := testConfig()
	cfg.UseStartTLS = true
	c := dialT(t, addr, cfg)
	ver, cipher, ok := c.TLS()
	if !ok || ver != "TLSv1.3" || !strings.HasPrefix(cipher, "TLS_") {
		t.Fatalf("TLS() = %q, %q, %v", ver, cipher, ok)
	}
	if !c.Has("STARTTLS") || !slices.Contains(c.Extensions(), "STARTTLS") {
		t.Fatalf("STARTTLS as offered before TLS is missing: %v", c.Extensions())
	}
	res, err := c.Send(context.Background(), Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "b@dst.test"}}}, []byte("hi\r\n"))
	must(t, err, "Send")
	wantReply(t, "rcpt", res[0], 250, "2.0.0")
	msgs, _ := be.snapshot()
	if len(msgs) != 1 || !msgs[0].TLS {
		t.Fatalf("server got %d messages, TLS %v", len(msgs), len(msgs) == 1 && msgs[0].TLS)
	}
	must(t, c.Quit(), "Quit")
}

// TestStartTLSFallback: the server speaks only TLS 1.1, the client insists
// on 1.2, the handshake fails, and Dial reconnects in plaintext.
func TestStartTLSFallback(t *testing.T) {
	t.Parallel()
	be := &sink{}
	addr := startGoSMTP(t, be, func(s *smtp.Server) {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	})
	cfg := testConfig()
	cfg.UseStartTLS = true
	c := dialT(t, addr, cfg)
	if _, _, ok := c.TLS(); ok {
		t.Fatal("TLS() ok after a failed handshake")
	}
	res, err := c.Send(context.Background(), Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "b@dst.test"}}}, []byte("hi\r\n"))
	must(t, err, "Send")
	wantReply(t, "rcpt", res[0], 250, "2.0.0")
	be.mu.Lock()
	sessions := be.sessions
	be.mu.Unlock()
	if sessions != 2 {
		t.Fatalf("server saw %d sessions, want 2 (TLS attempt, then plaintext)", sessions)
	}
}

// TestStartTLSRefused: a 454 to STARTTLS leaves the session in plaintext.
func TestStartTLSRefused(t *testing.T) {
	t.Parallel()
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		fmt.Fprint(c, "220 raw.test\r\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.Fields(line)[0]) {
			case "EHLO":
				fmt.Fprint(c, "250-raw.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
			case "STARTTLS":
				fmt.Fprint(c, "454 4.7.0 TLS not available\r\n")
			case "QUIT":
				fmt.Fprint(c, "221 bye\r\n")
				return
			default:
				fmt.Fprint(c, "502 5.5.1 no\r\n")
			}
		}
	})
	cfg := testConfig()
	cfg.UseStartTLS = true
	c := dialT(t, addr, cfg)
	if _, _, ok := c.TLS(); ok || !c.Has("8BITMIME") {
		t.Fatalf("TLS ok = %v, extensions %v", ok, c.Extensions())
	}
	must(t, c.Quit(), "Quit")
}

func TestSourceIP(t *testing.T) {
	t.Parallel()
	be := &sink{}
	addr := startGoSMTP(t, be, nil)
	cfg := testConfig()
	cfg.LocalIP = netip.MustParseAddr("127.0.0.3")
	c := dialT(t, addr, cfg)
	if c.LocalIP() != "127.0.0.3" {
		t.Fatalf("LocalIP() = %q", c.LocalIP())
	}
	must(t, c.Quit(), "Quit")
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.peers) != 1 || be.peers[0] != "127.0.0.3" {
		t.Fatalf("server saw peers %v, want [127.0.0.3]", be.peers)
	}
}

func TestDialClosedPort(t *testing.T) {
	t.Parallel()
	_, err := Dial(context.Background(), closedTCP, "mx.test", testConfig())
	wantReply(t, "Dial", asReply(t, err), 421, "4.4.1")
	if asReply(t, err).Err == nil {
		t.Fatal("no cause wrapped")
	}
	cfg := testConfig()
	cfg.Helo = "vmta1.test\r\nRSET"
	_, err = Dial(context.Background(), closedTCP, "mx.test", cfg)
	wantReply(t, "bad HELO name", asReply(t, err), 451, "4.3.5")
}

// TestDialTimeouts: a server that never greets runs into CommandTimeout,
// and a context deadline cuts a longer one short.
func TestDialTimeouts(t *testing.T) {
	t.Parallel()
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) { br.ReadString('\n') })
	cfg := testConfig()
	cfg.CommandTimeout = 200 * time.Millisecond
	start := time.Now()
	_, err := Dial(context.Background(), addr, "mx.test", cfg)
	wantReply(t, "silent greeting", asReply(t, err), 421, "4.4.2")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("cause %v is not a timeout", err.(interface{ Unwrap() error }).Unwrap())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = Dial(ctx, addr, "mx.test", testConfig())
	wantReply(t, "ctx deadline", asReply(t, err), 421, "4.4.2")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctx deadline: cause is not DeadlineExceeded: %v", asReply(t, err).Err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = Dial(ctx, addr, "mx.test", testConfig())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ctx cancel: %v (cause %v)", err, asReply(t, err).Err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timeouts took %v", d)
	}
}

// TestDialBadReplies feeds malformed and oversized replies: each gives an
// error, none a panic or a hang.
func TestDialBadReplies(t *testing.T) {
	t.Parallel()
	huge := "250-" + strings.Repeat("x", 70<<10) + "\r\n250 ok\r\n"
	many := strings.Repeat("250-SIZE\r\n", 8000) + "250 ok\r\n"
	cases := []struct {
		name, greeting, ehlo string
		code                 int
		status               string
	}{
		{"garbage greeting", "hello there\r\n", "", 421, "4.4.2"},
		{"short greeting", "22\r\n", "", 421, "4.4.2"},
		{"bad separator", "220_x\r\n", "", 421, "4.4.2"},
		{"code 999", "999 x\r\n", "", 421, "4.4.2"},
		{"greeting then EOF", "220-first line\r\n", "", 421, "4.4.2"},
		{"554 greeting", "554 5.7.1 go away\r\n", "", 554, "5.7.1"},
		{"421 greeting", "421 4.3.2 busy\r\n", "", 421, "4.3.2"},
		{"code changes mid-reply", "220 ok\r\n", "250-a\r\n251 b\r\n", 421, "4.4.2"},
		{"oversized line", "220 ok\r\n", huge, 421, "4.4.2"},
		{"oversized reply", "220 ok\r\n", many, 421, "4.4.2"},
		{"NUL in line", "220 ok\r\n", "250-a\x00b\r\n25\r\n", 421, "4.4.2"},
		{"EHLO 4xx", "220 ok\r\n", "451 4.3.0 later\r\n", 451, "4.3.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
				fmt.Fprint(c, tc.greeting)
				if tc.ehlo == "" {
					return
				}
				if line, _ := br.ReadString('\n'); strings.HasPrefix(line, "EHLO") {
					fmt.Fprint(c, tc.ehlo)
				}
				br.ReadString('\n')
			})
			_, err := Dial(context.Background(), addr, "mx.test", testConfig())
			wantReply(t, "Dial", asReply(t, err), tc.code, tc.status)
		})
	}
}
