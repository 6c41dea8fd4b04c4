package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestBadInput sends what a hostile or broken client would: each gets a
// clear SMTP error, and the daemon keeps serving normal mail afterwards.
func TestBadInput(t *testing.T) {
	t.Parallel()
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.9.1:25", testenv.SinkOptions{})
	mxTo(dns, "bad.test", "127.20.9.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.9.254"),
		DNS:     []string{dns.Addr()},
		Sources: []testenv.Source{{CIDR: "127.0.0.0/8", Relay: true, MaxMessageSize: "64k"}},
	}.TOML())

	var good []string // Message-IDs that must arrive
	// normal submits a well-formed message over r and expects 250.
	normal := func(t *testing.T, r *testenv.Raw) {
		t.Helper()
		msg := testenv.GenMessage(len(good), 500, "ok@bad.test")
		rep, err := r.Transaction("sender@e2e.test", []string{"ok@bad.test"}, msg)
		if err != nil || rep.Code != 250 {
			t.Errorf("normal message: %v %v, want 250", rep, err)
			return
		}
		good = append(good, testenv.MessageID(msg))
	}
	// fresh checks that a new session still gets 250 for a normal message.
	fresh := func(t *testing.T) {
		t.Helper()
		r := testenv.DialRaw(t, d.Addr())
		r.Cmd("EHLO client.test")
		normal(t, r)
		r.Cmd("QUIT")
	}
	is5xx := func(rep testenv.Reply) bool { return rep.Code/100 == 5 }
	oneOf := func(rep testenv.Reply, codes ...int) bool {
		for _, c := range codes {
			if rep.Code == c {
				return true
			}
		}
		return false
	}

	t.Run("oversized", func(t *testing.T) {
		r := testenv.DialRaw(t, d.Addr())
		r.Cmd("EHLO client.test")
		// RFC 1870 §6.1: a declared size over the limit is refused at MAIL.
		if rep := r.Cmd("MAIL FROM:<sender@e2e.test> SIZE=100000"); rep.Code != 552 || rep.Enh != "5.3.4" {
			t.Errorf("MAIL with SIZE=100000: %v, want 552 5.3.4", rep)
		}
		r.Cmd("RSET")
		big := testenv.GenMessage(0, 100*1024, "big@bad.test")
		rep, err := r.Transaction("sender@e2e.test", []string{"big@bad.test"}, big)
		if err != nil || rep.Code != 552 || rep.Enh != "5.3.4" {
			t.Errorf("100 KB message with max-message-size 64k: %v %v, want 552 5.3.4", rep, err)
		}
		normal(t, r) // the same session carries on
		fresh(t)
	})
	t.Run("bare-lf", func(t *testing.T) {
		r := testenv.DialRaw(t, d.Addr())
		r.Cmd("EHLO client.test")
		r.Cmd("MAIL FROM:<sender@e2e.test>")
		r.Cmd("RCPT TO:<lf@bad.test>")
		if rep := r.Cmd("DATA"); rep.Code != 354 {
			t.Fatalf("DATA: %v", rep)
		}
		id := testenv.NewMessageID(0)
		r.Write([]byte("Subject: bare LF\nMessage-ID: " + id + "\n\nbody line\n\r\n.\r\n"))
		rep, err := r.ReadReply()
		if err != nil || !is5xx(rep) {
			t.Errorf("bare LF in DATA: %v %v, want 5xx", rep, err)
		}
		fresh(t)
	})
	t.Run("long-line", func(t *testing.T) {
		r := testenv.DialRaw(t, d.Addr())
		r.Cmd("EHLO client.test")
		line := append([]byte("NOOP "), bytes.Repeat([]byte("a"), 1<<20)...)
		line = append(line, "\r\n"...)
		werr := make(chan error, 1)
		go func() { werr <- r.Write(line) }() // the daemon may answer before reading it all
		rep, err := r.ReadReply()
		<-werr
		if err != nil || !oneOf(rep, 500, 552) {
			t.Errorf("1 MB command line: %v %v, want 500 or 552", rep, err)
		}
		fresh(t)
	})
	t.Run("nul", func(t *testing.T) {
		r := testenv.DialRaw(t, d.Addr())
		r.Cmd("EHLO client.test")
		for _, cmd := range []string{"MAIL FROM:<nul\x00x@e2e.test>", "NO\x00OP"} {
			rep, err := r.CmdErr(cmd)
			if err != nil || !is5xx(rep) {
				t.Errorf("%q: %v %v, want 5xx", cmd, rep, err)
			}
		}
		fresh(t)
	})
	t.Run("malformed-addresses", func(t *testing.T) {
		r := testenv.DialRaw(t, d.Addr())
		r.Cmd("EHLO client.test")
		// Deviation: a path without angle brackets ("MAIL FROM:a@b") is
		// accepted, as Postfix does by default (strict_rfc821_envelopes=no)
		// and go-smtp's parser allows; it is unambiguous.
		for _, cmd := range []string{"MAIL FROM:<foo@>", "MAIL FROM:<@@>", "MAIL FROM:<sender@e2e.test", "MAIL FROM:<a b@e2e.test>"} {
			if rep := r.Cmd(cmd); !oneOf(rep, 501, 553) {
				t.Errorf("%q: %v, want 501 or 553", cmd, rep)
			}
		}
		if rep := r.Cmd("MAIL FROM:<sender@e2e.test>"); rep.Code != 250 {
			t.Fatalf("valid MAIL: %v", rep)
		}
		accepted := false
		for _, cmd := range []string{"RCPT TO:<@@>", "RCPT TO:<x@bad.test", "RCPT TO:<x@>", "RCPT TO:<x y@bad.test>"} {
			rep := r.Cmd(cmd)
			if !oneOf(rep, 501, 553) {
				t.Errorf("%q: %v, want 501 or 553", cmd, rep)
			}
			accepted = accepted || rep.Code/100 == 2
		}
		if !accepted { // RFC 5321 §3.3: DATA needs a valid recipient
			if rep := r.Cmd("DATA"); rep.Code/100 != 5 {
				t.Fatalf("DATA with no valid recipient: %v, want 5xx", rep)
			}
		}
		r.Cmd("RSET")
		normal(t, r)
		fresh(t)
	})

	sink.WaitCount(t, len(good), 20*time.Second)
	time.Sleep(time.Second) // anything refused that slipped through shows up by now
	got := sink.MessageIDs()
	for _, id := range good {
		if got[id] != 1 {
			t.Errorf("message %s at the sink %d times", id, got[id])
		}
	}
	if sink.Count() != len(good) {
		var rcpts []string
		for _, m := range sink.Messages() {
			rcpts = append(rcpts, strings.Join(m.Rcpts, ","))
		}
		t.Errorf("sink holds %d messages, want the %d good ones: %v", sink.Count(), len(good), rcpts)
	}
}
