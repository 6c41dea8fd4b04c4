package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/engine/config"
)

// TestConfigLoads checks the generated TOML against the daemon's own loader.
func TestConfigLoads(t *testing.T) {
	cfg := Config{
		Listen:      "127.20.250.20:2525",
		MaxSessions: 50,
		DNS:         []string{"127.0.0.1:5353"},
		Sources: []Source{
			{CIDR: "127.0.0.1/32", PlainAuth: true, MaxMessageSize: "64k", AddReceivedHeader: Bool(false)},
			{CIDR: "127.20.250.0/24", Relay: true, ProcessXJob: true, ProcessXVirtualMTA: true, BounceDSN: true},
		},
		Users: []User{{Name: "alice", Password: `pa"ss\word`}},
		Domains: map[string]Domain{
			"*":         {MaxSMTPOut: 4, MaxMsgPerConnection: Unlimited, RetryAfter: []string{"1s", "2s"}, BounceAfter: "10s"},
			"pipe.test": {Route: "127.20.250.21:25", UseStartTLS: Bool(false), MaxMsgPerConnection: 5},
		},
		Extra: "[[bounce-rule]]\npattern = \"mailbox is full\"\ncategory = \"quota-issues\"\n",
	}
	dir := t.TempDir()
	text := "spool-dir = " + tomlString(filepath.Join(dir, "spool")) + "\nlog-dir = " + tomlString(dir) + "\n" + cfg.TOML()
	path := filepath.Join(dir, "sluice.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.Load: %v\n%s", err, text)
	}
	if c.Listeners[0].Address != cfg.Listen || len(c.Sources) != 2 || c.SMTPUsers[0].Password != `pa"ss\word` {
		t.Errorf("loaded %+v", c)
	}
	if !c.Sources[0].AllowUnencryptedPlainAuth || c.Sources[0].AddReceivedHeader == nil || *c.Sources[0].AddReceivedHeader {
		t.Errorf("source 0 = %+v", c.Sources[0])
	}
	d := c.Domains["*"]
	if d == nil || *d.MaxSMTPOut != 4 || *d.MaxMsgPerConnection != 0 || len(d.RetryAfter) != 2 {
		t.Errorf("domain * = %+v", d)
	}
	p := c.Domains["pipe.test"]
	if p == nil || *p.Route != "127.20.250.21:25" || *p.UseStartTLS || *p.MaxMsgPerConnection != 5 {
		t.Errorf("domain pipe.test = %+v", p)
	}
	if len(c.BounceRules) != 1 || c.Delivery.Port != 25 || len(c.Acct.Records) != 4 {
		t.Errorf("bounce rules %d, port %d, acct %v", len(c.BounceRules), c.Delivery.Port, c.Acct.Records)
	}
}

func TestTOMLString(t *testing.T) {
	cases := map[string]string{
		`plain`:     `"plain"`,
		`a"b\c`:     `"a\"b\\c"`,
		"tab\there": `"tab\u0009here"`,
		"*":         `"*"`,
	}
	for in, want := range cases {
		if got := tomlString(in); got != want {
			t.Errorf("tomlString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestPrepareConfig(t *testing.T) {
	d := &Daemon{Dir: "/tmp/x"}
	text, err := d.prepareConfig(Config{Listen: "127.20.250.22:2525"}.TOML())
	if err != nil {
		t.Fatal(err)
	}
	if d.Addr() != "127.20.250.22:2525" || d.SpoolDir != "/tmp/x/spool" || d.LogDir != "/tmp/x/log" {
		t.Errorf("addr %s spool %s log %s", d.Addr(), d.SpoolDir, d.LogDir)
	}
	if !strings.HasPrefix(text, "spool-dir = \"/tmp/x/spool\"\nlog-dir = \"/tmp/x/log\"\n") {
		t.Errorf("text starts %.80q", text)
	}
	text, err = d.prepareConfig("log-dir = \"acct\"\n[[listener]]\naddress = \"127.20.250.22:1\"\n")
	if err != nil || d.LogDir != "/tmp/x/acct" || strings.Count(text, "log-dir") != 1 {
		t.Errorf("relative log-dir: %s, %v\n%s", d.LogDir, err, text)
	}
	if _, err := d.prepareConfig("hostname = \"x\"\n"); err == nil {
		t.Error("config without listener accepted")
	}
}
