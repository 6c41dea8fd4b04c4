package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// Addresses: 127.20.108.x strangers (no [[source]] matches), .1 the sink,
// .254 the daemon, .253 its admin API; 127.20.109.x the secrets test.

// relayTricks are recipient forms that have tricked MTAs into relaying:
// the percent hack, source routes, quoted local parts with an @, several
// @, bang paths, address literals, a trailing dot, mixed case; aimed at an
// outside domain and at the daemon's own names.
func relayTricks() []string {
	var out []string
	for _, t := range []string{
		"%s@relay.test", "%s@RELAY.TEST", "%s@Relay.Test", "%s@relay.test.",
		"%s%%relay.test@sluice.test", "%s%%relay.test@[127.20.108.254]", "%s%%relay.test@localhost",
		"@sluice.test:%s@relay.test", "@sluice.test,@relay.test:%s@relay.test", "@[127.20.108.254]:%s@relay.test",
		`"%s@relay.test"@sluice.test`, `"%s%%relay.test"@sluice.test`, `"%s@relay.test"`,
		"%s@relay.test@sluice.test", "%s@sluice.test@relay.test",
		"relay.test!%s@sluice.test", "relay.test!%s",
		"%s@[127.20.108.1]", "%s@[IPv6:::1]", "%s@[127.0.0.1]",
		"%s@sluice.test", "%s@SLUICE.TEST.", "%s@localhost", "%s", "postmaster@relay.test",
	} {
		for _, local := range []string{"user", "User", "a.b+tag", "x"} {
			if strings.Contains(t, "%s") {
				out = append(out, fmt.Sprintf(t, local))
			} else {
				out = append(out, t+"#"+local) // marks the variant; stripped below
			}
		}
	}
	return out
}

// TestNoOpenRelay makes 100 relay attempts from an address that matches no
// [[source]] and has not authenticated: every recipient is refused and
// nothing reaches the sink or the accounting.
func TestNoOpenRelay(t *testing.T) {
	t.Parallel()
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.108.1:25", testenv.SinkOptions{})
	mxTo(dns, "relay.test", "127.20.108.1")
	dns.SetA("sluice.test", "127.20.108.254")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.108.254"),
		DNS:     []string{dns.Addr()},
		Sources: []testenv.Source{{CIDR: "127.20.107.0/24", Relay: true}}, // not the strangers' network
	}.TOML())

	tricks := relayTricks()
	if len(tricks) != 100 {
		t.Fatalf("%d relay attempts, want 100", len(tricks))
	}
	accepted := 0
	for i, rcpt := range tricks {
		rcpt, _, _ = strings.Cut(rcpt, "#")
		r := testenv.DialRawFrom(t, fmt.Sprintf("127.20.108.%d", 10+i%100), d.Addr())
		helo := []string{"EHLO sluice.test", "HELO localhost", "EHLO [127.20.108.254]", "EHLO relay.test"}[i%4]
		r.Cmd(helo)
		from := []string{"sender@e2e.test", "postmaster@sluice.test", "", "user@relay.test"}[i%4]
		if rep := r.Cmd("MAIL FROM:<" + from + ">"); rep.Code != 250 {
			t.Errorf("MAIL FROM:<%s>: %v", from, rep)
		}
		rep := r.Cmd("RCPT TO:<" + rcpt + ">")
		if rep.Code/100 == 2 {
			accepted++
			t.Errorf("RCPT TO:<%s> from a stranger: %v, want a refusal", rcpt, rep)
			if data := r.Cmd("DATA"); data.Code == 354 {
				r.Write(testenv.DotStuff(testenv.GenMessage(i, 200, "x@relay.test")))
				r.Send(".")
				r.ReadReply()
			}
		}
		r.Send("QUIT")
		r.Close()
	}
	time.Sleep(2 * time.Second) // anything queued would be on its way by now
	if n := sink.Count(); n > 0 || accepted > 0 {
		t.Fatalf("open relay: %d recipients accepted, %d messages at the sink", accepted, n)
	}
	if recs := d.Acct(); len(recs) > 0 {
		t.Fatalf("acct rows after refused relay attempts:\n%s", dump(recs))
	}
	t.Logf("%d relay attempts from a stranger, all refused", len(tricks))
}

// TestAdminAPIRefusesWithoutToken: the admin API answers 401 without the
// bearer token or with a wrong one, and 200 with it.
func TestAdminAPIRefusesWithoutToken(t *testing.T) {
	t.Parallel()
	const token = "AdminTok-7d8e9f0a1b2c3d4e"
	adminAddr := testenv.FreeAddr(t, "127.20.108.253")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.108.252"),
		Extra:  fmt.Sprintf("[admin]\nlisten = %q\ntoken = %q\n", adminAddr, token),
	}.TOML())
	_ = d
	get := func(auth string) int {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/api/v1/status", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("admin API: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"Bearer " + token[:len(token)-1], http.StatusUnauthorized},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+token)), http.StatusUnauthorized},
		{"Bearer " + token, http.StatusOK},
	} {
		if got := get(c.auth); got != c.want {
			t.Errorf("Authorization %q: %d, want %d", c.auth, got, c.want)
		}
	}
}

// TestSecretsNotLogged runs the daemon at debug level with every kind of
// secret configured (an SMTP password, the admin token, the trace-header
// HMAC secret, a DKIM key, the spool encryption key), exercises AUTH PLAIN
// and LOGIN (right and wrong), injects, delivers and calls the admin API,
// then searches the whole log for each secret and its base64 forms.
func TestSecretsNotLogged(t *testing.T) {
	t.Parallel()
	const (
		password = "Pw-9f3kq7Zs2xYw"
		guess    = "Guess-Qm4Lr8Tn"
		token    = "AdminTok-5a6b7c8d9e0f1a2b"
		fblKey   = "FblSecret-3c4d5e6f7a8b9c0d"
	)
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	dkimPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	dkimFile := filepath.Join(dir, "dkim.pem")
	spoolKey := make([]byte, 32)
	rand.Read(spoolKey)
	spoolKeyHex := hex.EncodeToString(spoolKey)
	spoolKeyFile := filepath.Join(dir, "spool.key")
	for f, b := range map[string][]byte{dkimFile: dkimPEM, spoolKeyFile: []byte(spoolKeyHex + "\n")} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.109.1:25", testenv.SinkOptions{})
	mxTo(dns, "secret.test", "127.20.109.1")
	adminAddr := testenv.FreeAddr(t, "127.20.109.253")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:   listenAddr(t, "127.20.109.254"),
		DNS:      []string{dns.Addr()},
		LogLevel: "debug",
		Sources:  []testenv.Source{{CIDR: "127.20.109.0/24", PlainAuth: true}},
		Users:    []testenv.User{{Name: "alice", Password: password}},
		Extra: fmt.Sprintf("[admin]\nlisten = %q\ntoken = %q\n\n[fbl]\nsecret = %q\n\n[[dkim-key]]\ndomain = \"e2e.test\"\nselector = \"s1\"\nkey-file = %q\n\n[spool]\nencryption-key-file = %q\n",
			adminAddr, token, fblKey, dkimFile, spoolKeyFile),
	}.TOML())

	b64 := base64.StdEncoding.EncodeToString
	r := testenv.DialRawFrom(t, "127.20.109.10", d.Addr())
	r.Cmd("EHLO secrets.test")
	if rep := r.Cmd("AUTH PLAIN " + b64([]byte("\x00alice\x00"+guess))); rep.Code != 535 {
		t.Errorf("AUTH PLAIN with a wrong password: %v", rep)
	}
	r.Cmd("AUTH LOGIN")
	r.Cmd(b64([]byte("alice")))
	if rep := r.Cmd(b64([]byte(guess + "2"))); rep.Code != 535 {
		t.Errorf("AUTH LOGIN with a wrong password: %v", rep)
	}
	if rep := r.Cmd("AUTH PLAIN " + b64([]byte("\x00alice\x00"+password))); rep.Code != 235 {
		t.Fatalf("AUTH PLAIN: %v", rep)
	}
	msg := testenv.GenMessage(1, 500, "bob@secret.test")
	if rep, err := r.Transaction("sender@e2e.test", []string{"bob@secret.test"}, msg); err != nil || rep.Code != 250 {
		t.Fatalf("inject: %v %v", rep, err)
	}
	r2 := testenv.DialRawFrom(t, "127.20.109.11", d.Addr())
	r2.Cmd("EHLO secrets.test")
	r2.Cmd("AUTH LOGIN " + b64([]byte("alice")))
	if rep := r2.Cmd(b64([]byte(password))); rep.Code != 235 {
		t.Errorf("AUTH LOGIN: %v", rep)
	}
	sink.WaitCount(t, 1, 20*time.Second)
	for _, auth := range []string{"Bearer " + token, "Bearer not-" + token, ""} {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/api/v1/status", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	d.Stop()

	logText, err := os.ReadFile(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"smtp password": password, "smtp password (base64)": b64([]byte(password)),
		"AUTH PLAIN payload": b64([]byte("\x00alice\x00" + password)), "wrong password": guess,
		"admin token": token, "fbl secret": fblKey, "spool key": spoolKeyHex,
		"spool key (base64)": b64(spoolKey),
	}
	for i, line := range strings.Split(string(dkimPEM), "\n") {
		if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
			secrets[fmt.Sprintf("DKIM key line %d", i)] = line
		}
	}
	for what, s := range secrets {
		if strings.Contains(string(logText), s) {
			t.Errorf("%s found in the log", what)
		}
	}
	t.Logf("%d secrets checked against %d bytes of debug log", len(secrets), len(logText))
}
