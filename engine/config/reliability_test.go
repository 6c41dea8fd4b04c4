package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListenerLimitDefaults(t *testing.T) {
	c := mustLoad(t, "[[listener]]\naddress = \"127.0.0.1:2525\"\n")
	l := c.Listeners[0]
	if l.MaxSessionsPerIP != DefaultMaxSessionsPerIP || l.CommandTimeout.D() != 5*time.Minute {
		t.Fatalf("defaults: %+v", l)
	}
	c = mustLoad(t, "[[listener]]\naddress = \"127.0.0.1:2525\"\nmax-sessions-per-ip = 3\ncommand-timeout = \"2s\"\n")
	l = c.Listeners[0]
	if l.MaxSessionsPerIP != 3 || l.CommandTimeout.D() != 2*time.Second {
		t.Fatalf("explicit: %+v", l)
	}
}

func TestReliabilityErrors(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "spool.key")
	os.WriteFile(key, []byte(strings.Repeat("ab", 32)), 0o600)
	for _, c := range []struct{ body, want string }{
		{"[[listener]]\naddress = \"127.0.0.1:2525\"\nmax-sessions-per-ip = -1\n", "listener[0].max-sessions-per-ip: must not be negative (line 3)"},
		{"[[listener]]\naddress = \"127.0.0.1:2525\"\ncommand-timeout = \"-1s\"\n", "listener[0].command-timeout: invalid duration \"-1s\": must not be negative (line 3)"},
		{"[[listener]]\naddress = \"127.0.0.1:2525\"\n[spool]\nold-key-files = [\"" + key + "\"]\n", "spool.old-key-files: needs spool.encryption-key-file"},
		{"[[listener]]\naddress = \"127.0.0.1:2525\"\n[spool]\nencryption-key-file = \"" + dir + "/nope.key\"\n", "spool.encryption-key-file: stat " + dir + "/nope.key: no such file"},
	} {
		_, err := Load(writeConfig(t, c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.body, err, c.want)
		}
	}
	c := mustLoad(t, "[[listener]]\naddress = \"127.0.0.1:2525\"\n[spool]\nencryption-key-file = \""+key+"\"\n")
	if c.Spool.EncryptionKeyFile != key {
		t.Fatalf("Spool = %+v", c.Spool)
	}
}

// TestAdminDefaultsToLoopback: an [admin] table without listen binds the
// admin API to loopback only (issue 10, security).
func TestAdminDefaultsToLoopback(t *testing.T) {
	c := mustLoad(t, "[[listener]]\naddress = \"127.0.0.1:2525\"\n[admin]\ntoken = \"0123456789abcdefXYZ\"\n")
	host, _, err := net.SplitHostPort(c.Admin.Listen)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Fatalf("admin listen defaults to %q, want a loopback address", c.Admin.Listen)
	}
	if c := mustLoad(t, "[[listener]]\naddress = \"127.0.0.1:2525\"\n"); c.Admin != nil {
		t.Fatalf("no [admin]: Admin = %+v, want nil (no API)", c.Admin)
	}
}
