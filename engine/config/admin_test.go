package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdmin(t *testing.T) {
	const base = "[[listener]]\naddress = \"127.0.0.1:0\"\n"
	if c := mustLoad(t, base); c.Admin != nil {
		t.Errorf("no [admin]: Admin = %+v, want nil", c.Admin)
	}
	c := mustLoad(t, base+"[admin]\ntoken = \"0123456789abcdefgh\"\n")
	if c.Admin == nil || c.Admin.Listen != "127.0.0.1:8080" {
		t.Fatalf("Admin = %+v, want the loopback default", c.Admin)
	}
	if tok, err := c.Admin.TokenValue(); err != nil || tok != "0123456789abcdefgh" {
		t.Errorf("TokenValue = %q, %v", tok, err)
	}

	tf := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tf, []byte("  file-token-0123456789  \nsecond line\n"), 0o600)
	c = mustLoad(t, base+"[admin]\nlisten = \"127.42.0.1:0\"\ntoken-file = \""+tf+"\"\n")
	if tok, err := c.Admin.TokenValue(); err != nil || tok != "file-token-0123456789" {
		t.Errorf("TokenValue from file = %q, %v", tok, err)
	}

	bad := []struct{ body, want string }{
		{"[admin]\n", "admin.token: required"},
		{"[admin]\ntoken = \"short\"\n", "admin.token: the token must be at least 16 characters long (line"},
		{"[admin]\ntoken = \"0123456789abcdefgh\"\nlisten = \"nowhere\"\n", "admin.listen: \"nowhere\" is not host:port (line"},
		{"[admin]\ntoken = \"0123456789abcdefgh\"\ntoken-file = \"x\"\n", "set token or token-file, not both"},
		{"[admin]\ntoken-file = \"/nonexistent/token\"\n", "admin.token-file: open /nonexistent/token"},
		{"[admin]\ntoken = \"0123456789 abcdefgh\"\n", "printable ASCII without spaces"},
	}
	for _, b := range bad {
		_, err := Load(writeConfig(t, base+b.body))
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%q: err = %v, want %q", b.body, err, b.want)
		}
		if err != nil && strings.Contains(err.Error(), "0123456789abcdefgh") {
			t.Errorf("%q: error reveals the token: %v", b.body, err)
		}
	}
}
