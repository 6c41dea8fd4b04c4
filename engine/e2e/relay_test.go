package e2e

import (
	"encoding/base64"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestRelayControl: relaying is refused to a source without the right
// (550 5.7.1 at RCPT), allowed to a relaying source, and allowed after AUTH
// PLAIN with a plain or bcrypt password; a wrong password gets 535 after a
// delay.
func TestRelayControl(t *testing.T) {
	t.Parallel()
	const (
		relayIP   = "127.20.7.200" // always-allow-relaying
		authIP    = "127.0.0.1"    // AUTH without TLS allowed, no relaying
		strangeIP = "127.20.7.201" // matches no source
	)
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.7.1:25", testenv.SinkOptions{})
	mxTo(dns, "relay.test", "127.20.7.1")
	hash, err := bcrypt.GenerateFromPassword([]byte("hunter2"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.7.254"),
		DNS:    []string{dns.Addr()},
		Sources: []testenv.Source{
			{CIDR: authIP + "/32", PlainAuth: true},
			{CIDR: relayIP + "/32", Relay: true},
		},
		Users: []testenv.User{{Name: "alice", Password: "s3cret"}, {Name: "bob", Password: string(hash)}},
	}.TOML())

	var delivered []string
	transaction := func(t *testing.T, r *testenv.Raw, rcpt string) {
		t.Helper()
		msg := testenv.GenMessage(len(delivered), 300, rcpt)
		rep, err := r.Transaction("sender@e2e.test", []string{rcpt}, msg)
		if err != nil || rep.Code != 250 {
			t.Errorf("relay to %s: %v %v, want 250", rcpt, rep, err)
			return
		}
		delivered = append(delivered, testenv.MessageID(msg))
	}
	auth := func(r *testenv.Raw, user, pass string) (testenv.Reply, time.Duration) {
		start := time.Now()
		rep := r.Cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)))
		return rep, time.Since(start)
	}

	t.Run("no-auth-refused", func(t *testing.T) {
		r := testenv.DialRawFrom(t, authIP, d.Addr())
		r.Cmd("EHLO client.test")
		if rep := r.Cmd("MAIL FROM:<sender@e2e.test>"); rep.Code != 250 {
			t.Fatalf("MAIL: %v", rep)
		}
		if rep := r.Cmd("RCPT TO:<x@relay.test>"); rep.Code != 550 || rep.Enh != "5.7.1" {
			t.Errorf("RCPT without relaying right: %v, want 550 5.7.1", rep)
		}
	})
	t.Run("relay-source", func(t *testing.T) {
		r := testenv.DialRawFrom(t, relayIP, d.Addr())
		r.Cmd("EHLO client.test")
		transaction(t, r, "relayed@relay.test")
	})
	t.Run("auth-plain", func(t *testing.T) {
		r := testenv.DialRawFrom(t, authIP, d.Addr())
		r.Cmd("EHLO client.test")
		if rep, _ := auth(r, "alice", "s3cret"); rep.Code != 235 {
			t.Fatalf("AUTH alice: %v, want 235", rep)
		}
		transaction(t, r, "alice@relay.test")
	})
	t.Run("auth-bcrypt", func(t *testing.T) {
		r := testenv.DialRawFrom(t, authIP, d.Addr())
		r.Cmd("EHLO client.test")
		if rep, _ := auth(r, "bob", "hunter2"); rep.Code != 235 {
			t.Fatalf("AUTH bob (bcrypt): %v, want 235", rep)
		}
		transaction(t, r, "bob@relay.test")
	})
	t.Run("auth-wrong-password", func(t *testing.T) {
		r := testenv.DialRawFrom(t, authIP, d.Addr())
		r.Cmd("EHLO client.test")
		rep, took := auth(r, "alice", "wrong")
		if rep.Code != 535 {
			t.Errorf("AUTH with a wrong password: %v, want 535", rep)
		}
		if took < 450*time.Millisecond {
			t.Errorf("failed AUTH answered after %v, want a delay of about 0.5s or more", took)
		}
		r.Cmd("MAIL FROM:<sender@e2e.test>")
		if rep := r.Cmd("RCPT TO:<x@relay.test>"); rep.Code != 550 {
			t.Errorf("RCPT after failed AUTH: %v, want 550", rep)
		}
		r.Cmd("RSET") // RFC 4954 §4: AUTH during a transaction is refused with 503
		rep, _ = auth(r, "nobody", "s3cret")
		if rep.Code != 535 {
			t.Errorf("AUTH as an unknown user: %v, want 535", rep)
		}
	})
	t.Run("auth-not-allowed-unencrypted", func(t *testing.T) {
		r := testenv.DialRawFrom(t, strangeIP, d.Addr())
		r.Cmd("EHLO client.test")
		if rep, _ := auth(r, "alice", "s3cret"); rep.Code == 235 {
			t.Errorf("AUTH PLAIN without TLS accepted from a source that does not allow it")
		}
		r.Cmd("RSET")
		r.Cmd("MAIL FROM:<sender@e2e.test>")
		if rep := r.Cmd("RCPT TO:<x@relay.test>"); rep.Code != 550 {
			t.Errorf("RCPT from an unknown source: %v, want 550", rep)
		}
	})

	sink.WaitCount(t, len(delivered), 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	got := sink.MessageIDs()
	for _, id := range delivered {
		if got[id] != 1 {
			t.Errorf("message %s at the sink %d times", id, got[id])
		}
	}
	if sink.Count() != len(delivered) {
		t.Errorf("sink holds %d messages, want %d: refused ones were delivered", sink.Count(), len(delivered))
	}
	d.WaitAcct(t, testenv.OfType("d"), len(delivered), 10*time.Second)
}
