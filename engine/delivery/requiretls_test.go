package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mta/sluice/engine/testenv"
)

func sessionsOf(be *sink) int {
	be.mu.Lock()
	defer be.mu.Unlock()
	return be.sessions
}

// TestRequireTLSNoFallback: with RequireTLS, a server without STARTTLS, one
// refusing it and one whose handshake fails each give a 4.7.x deferral on
// one connection: never a plaintext session.
func TestRequireTLSNoFallback(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.RequireTLS = true // implies STARTTLS even with UseStartTLS off

	t.Run("not-offered", func(t *testing.T) {
		be := &sink{}
		addr := startGoSMTP(t, be, nil)
		_, err := Dial(context.Background(), addr, "mx.test", cfg)
		wantReply(t, "dial", asReply(t, err), 451, "4.7.4")
		if n := sessionsOf(be); n != 1 {
			t.Errorf("%d sessions, want 1", n)
		}
	})
	t.Run("handshake-fails", func(t *testing.T) {
		be := &sink{}
		addr := startGoSMTP(t, be, func(s *smtp.Server) {
			s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
		})
		_, err := Dial(context.Background(), addr, "mx.test", cfg)
		wantReply(t, "dial", asReply(t, err), 451, "4.7.5")
		if n := sessionsOf(be); n != 1 {
			t.Errorf("%d sessions, want 1 (no plaintext retry)", n)
		}
	})
	t.Run("refused", func(t *testing.T) {
		addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
			fmt.Fprint(c, "220 raw.test ESMTP\r\n")
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
				case strings.HasPrefix(cmd, "EHLO"):
					fmt.Fprint(c, "250-raw.test\r\n250 STARTTLS\r\n")
				case cmd == "STARTTLS":
					fmt.Fprint(c, "454 4.7.0 TLS not available\r\n")
				case cmd == "QUIT":
					fmt.Fprint(c, "221 bye\r\n")
					return
				default:
					fmt.Fprint(c, "250 ok\r\n")
				}
			}
		})
		_, err := Dial(context.Background(), addr, "mx.test", cfg)
		wantReply(t, "dial", asReply(t, err), 451, "4.7.4")
	})
}

// TestVerified: the certificate is checked against RootCAs and the MX name;
// the handshake itself succeeds either way (opportunistic).
func TestVerified(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	cases := []struct {
		name string
		cert tls.Certificate
		ok   bool
	}{
		{"ca-signed", ca.Issue(t, "mx.test"), true},
		{"wrong-name", ca.Issue(t, "other.test"), false},
		{"self-signed", selfSigned(t), false},
	}
	for _, c := range cases {
		addr := startGoSMTP(t, &sink{}, func(s *smtp.Server) {
			s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{c.cert}}
		})
		cfg := testConfig()
		cfg.UseStartTLS = true
		cfg.RootCAs = ca.Pool()
		conn := dialT(t, addr, cfg)
		if _, _, tlsOK := conn.TLS(); !tlsOK {
			t.Errorf("%s: no TLS", c.name)
		}
		if err := conn.Verified(); (err == nil) != c.ok {
			t.Errorf("%s: Verified() = %v, want ok %v", c.name, err, c.ok)
		}
	}
	plain := dialT(t, startGoSMTP(t, &sink{}, nil), testConfig())
	if plain.Verified() == nil {
		t.Error("Verified() on a plaintext session is nil")
	}
}

// TestRequireTLSMessage: a REQUIRETLS message (RFC 8689 §4.2.1) goes only
// over verified TLS to a host offering REQUIRETLS, with the parameter.
func TestRequireTLSMessage(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	env := Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "b@dst.test"}}, RequireTLS: true}
	start := func(cert tls.Certificate, tlsOn, reqTLS bool) (*sink, *Conn) {
		be := &sink{}
		addr := startGoSMTP(t, be, func(s *smtp.Server) {
			if tlsOn {
				s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			s.EnableREQUIRETLS = reqTLS
		})
		cfg := testConfig()
		cfg.UseStartTLS = true
		cfg.RootCAs = ca.Pool()
		return be, dialT(t, addr, cfg)
	}
	good := ca.Issue(t, "mx.test")

	be, c := start(good, true, true)
	res, err := c.Send(context.Background(), env, []byte("hi\r\n"))
	must(t, err, "Send")
	wantReply(t, "verified+REQUIRETLS", res[0], 250, "2.0.0")
	if msgs, _ := be.snapshot(); len(msgs) != 1 || !msgs[0].Mail.RequireTLS || !msgs[0].TLS {
		t.Errorf("server did not get REQUIRETLS over TLS: %+v", msgs)
	}

	cases := []struct {
		name          string
		cert          tls.Certificate
		tlsOn, reqTLS bool
		code          int
		status        string
	}{
		{"no-requiretls", good, true, false, 550, "5.7.30"},
		{"unverified", selfSigned(t), true, true, 451, "4.7.5"},
		{"plaintext", good, false, true, 451, "4.7.10"},
	}
	for _, cs := range cases {
		be, c := start(cs.cert, cs.tlsOn, cs.reqTLS)
		res, err := c.Send(context.Background(), env, []byte("hi\r\n"))
		must(t, err, cs.name)
		wantReply(t, cs.name, res[0], cs.code, cs.status)
		if _, mails := be.snapshot(); mails != 0 {
			t.Errorf("%s: MAIL was sent", cs.name)
		}
	}
}
