package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestAdminReload: a config that does not load is refused with its error
// and the old config stays in force; a good one applies to the running
// daemon, without a restart, through `sluice reload` and SIGHUP: a queue
// that exists takes its new route, a new bounce rule classifies the next
// bounce, a new SMTP user may authenticate, a new admin token replaces
// the old, and an injection session opened before the reload goes on.
func TestAdminReload(t *testing.T) {
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.83.1:25", testenv.SinkOptions{
		RcptReply: func(rcpt string, attempt int) (int, string, string) {
			if strings.HasPrefix(rcpt, "blocked") {
				return 550, "5.7.1", "rejected by the xyzzy filter"
			}
			return 0, "", ""
		},
	})
	mxTo(dns, "d5.test", "127.20.83.1")
	const closed = "127.20.83.9:25" // nothing listens there
	d := startAdminDaemon(t, "127.20.83.253", testenv.Config{
		Listen:  listenAddr(t, "127.20.83.254"),
		DNS:     []string{dns.Addr()},
		Sources: []testenv.Source{{CIDR: "127.0.0.0/8", Relay: true, PlainAuth: true}},
		Users:   []testenv.User{{Name: "olduser", Password: "old-password-1"}},
		Domains: map[string]testenv.Domain{
			"*":       {RetryAfter: []string{"1s"}},
			"d4.test": {Route: closed},
		},
	})
	orig, err := os.ReadFile(d.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Inject(t, d.Addr(), "s@sender.test", []string{"a@d4.test"}, testenv.GenMessage(1, 300, "a@d4.test")); err != nil {
		t.Fatal(err)
	}
	d.WaitAcct(t, testenv.All(testenv.OfType("t"), testenv.ForRcpt("a@d4.test")), 1, 15*time.Second)
	if err := testenv.Inject(t, d.Addr(), "s@sender.test", []string{"blocked1@d5.test"}, testenv.GenMessage(2, 300, "blocked1@d5.test")); err != nil {
		t.Fatal(err)
	}
	first := d.WaitAcct(t, testenv.All(testenv.OfType("b"), testenv.ForRcpt("blocked1@d5.test")), 1, 15*time.Second)[0]
	if first["bounceCat"] == "content-related" {
		t.Fatalf("the bounce rule applies before the reload: %v", first)
	}

	newUser := func() error {
		in := testenv.NewInjector(d.Addr())
		in.Auth = testenv.PlainAuth("newuser", "new-password-2")
		defer in.Close()
		return in.Send("s@sender.test", []string{"ok@d5.test"}, testenv.GenMessage(5, 300, "ok@d5.test"))
	}
	if err := newUser(); err == nil {
		t.Fatal("AUTH as a user the config does not have succeeded")
	}

	// A broken file: refused with its error; the old config stays.
	broken := strings.Replace(string(orig), `route = "`+closed+`"`, `route = "`+closed+`"`+"\nmax-smtp-out = -3", 1) + "\n[[bounce-rule]]\npattern = \"xyzzy\"\ncategory = \"content-related\"\n"
	for _, bad := range []string{"this is = = not toml\n", broken} {
		if err := os.WriteFile(d.ConfigPath, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := adminCLI(t, "reload", "--server", d.api, "--token", adminToken)
		if code != 1 || !strings.Contains(out, d.ConfigPath) || !strings.Contains(out, "line") {
			t.Errorf("reload of a bad file: exit %d\n%s", code, out)
		}
	}
	if !d.Running() {
		t.Fatal("the daemon stopped after a bad reload")
	}
	if err := testenv.Inject(t, d.Addr(), "s@sender.test", []string{"blocked2@d5.test"}, testenv.GenMessage(3, 300, "blocked2@d5.test")); err != nil {
		t.Fatal(err)
	}
	r := d.WaitAcct(t, testenv.All(testenv.OfType("b"), testenv.ForRcpt("blocked2@d5.test")), 1, 15*time.Second)[0]
	if r["bounceCat"] != first["bounceCat"] {
		t.Errorf("after a refused reload the bounce category changed: %q, was %q", r["bounceCat"], first["bounceCat"])
	}
	if n := sink.Count(); n != 0 {
		t.Errorf("d4.test reached the sink before its route changed (%d)", n)
	}

	// An injection session opened before the reload must survive it.
	held := testenv.NewInjector(d.Addr())
	defer held.Close()
	if err := held.Send("s@sender.test", []string{"held1@d5.test"}, testenv.GenMessage(6, 300, "held1@d5.test")); err != nil {
		t.Fatal(err)
	}

	// A good file through `sluice reload`: new route, bounce rule and token.
	const token2 = "e2e-admin-token-second-0123"
	good := strings.Replace(string(orig), closed, "127.20.83.1:25", 1)
	good = strings.Replace(good, adminToken, token2, 1) + "\n[[bounce-rule]]\npattern = \"xyzzy\"\ncategory = \"content-related\"\n" +
		"\n[[smtp-user]]\nname = \"newuser\"\npassword = \"new-password-2\"\n"
	if err := os.WriteFile(d.ConfigPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := adminMustCLI(t, "reload", "--server", d.api, "--token", adminToken); !strings.Contains(out, "config reloaded") {
		t.Errorf("reload said %q", out)
	}
	d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt("a@d4.test")), 1, 15*time.Second)
	if err := held.Send("s@sender.test", []string{"held2@d5.test"}, testenv.GenMessage(7, 300, "held2@d5.test")); err != nil {
		t.Errorf("the session opened before the reload: %v", err)
	}
	d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt("held2@d5.test")), 1, 15*time.Second)
	if err := testenv.Inject(t, d.Addr(), "s@sender.test", []string{"blocked3@d5.test"}, testenv.GenMessage(4, 300, "blocked3@d5.test")); err != nil {
		t.Fatal(err)
	}
	r = d.WaitAcct(t, testenv.All(testenv.OfType("b"), testenv.ForRcpt("blocked3@d5.test")), 1, 15*time.Second)[0]
	if r["bounceCat"] != "content-related" {
		t.Errorf("after the reload, bounceCat %q, want content-related from the new rule", r["bounceCat"])
	}
	if err := newUser(); err != nil {
		t.Errorf("AUTH as the user the reload added: %v", err)
	}
	if code := d.call(t, "GET", "/api/v1/status", adminToken, "", nil); code != 401 {
		t.Errorf("the old token after the reload: %d, want 401", code)
	}
	if code := d.call(t, "GET", "/api/v1/status", token2, "", nil); code != 200 {
		t.Errorf("the new token after the reload: %d, want 200", code)
	}

	// SIGHUP does the same.
	const token3 = "e2e-admin-token-third-01234"
	if err := os.WriteFile(d.ConfigPath, []byte(strings.Replace(good, token2, token3, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(d.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	adminWaitFor(t, "the token of the SIGHUP reload", 10*time.Second, func() bool {
		return d.call(t, "GET", "/api/v1/healthz", token3, "", nil) == 200
	})
	if !d.Running() {
		t.Fatal("the daemon stopped on SIGHUP")
	}
}
