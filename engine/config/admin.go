package config

import (
	"fmt"
	"os"
	"strings"
)

// defaultAdminListen is where the admin API listens when [admin] sets no
// listen: loopback only, PowerMTA's web monitor port.
const defaultAdminListen = "127.0.0.1:8080"

// maxTokenFile bounds what TokenValue reads from token-file.
const maxTokenFile = 4096

// Admin configures the admin HTTP API, the CLI's peer. Without an [admin]
// table the daemon serves no API (Config.Admin is nil).
type Admin struct {
	Listen    string `toml:"listen"`     // ["127.0.0.1:8080"] host:port of the admin API
	Token     string `toml:"token"`      // bearer token every request must carry
	TokenFile string `toml:"token-file"` // or a file holding it (first line), read at load and reload

	MetricsPublic bool `toml:"metrics-public"` // [false] serve GET /metrics without the token
}

// TokenValue returns the bearer token: token, or the first line of
// token-file. Load has checked that one of them yields a token.
func (a *Admin) TokenValue() (string, error) {
	if a.TokenFile == "" {
		return a.Token, nil
	}
	f, err := os.Open(a.TokenFile)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, maxTokenFile+1)
	n, _ := f.Read(buf)
	if n > maxTokenFile {
		return "", fmt.Errorf("%s: larger than %d bytes", a.TokenFile, maxTokenFile)
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	return strings.TrimSpace(line), nil
}

// validateAdmin fills the default listen address and checks [admin]. Error
// messages never include the token itself.
func (c *Config) validateAdmin(p *problems) {
	a := c.Admin
	if a == nil {
		return
	}
	if a.Listen == "" {
		a.Listen = defaultAdminListen
	}
	if err := checkHostPort(a.Listen, true, 0); err != nil {
		p.add("admin.listen", "%v", err)
	}
	switch {
	case a.Token != "" && a.TokenFile != "":
		p.add("admin.token-file", "set token or token-file, not both")
	case a.Token == "" && a.TokenFile == "":
		p.add("admin.token", "required: every admin request must carry a bearer token (or set token-file)")
	default:
		tok, err := a.TokenValue()
		switch {
		case err != nil:
			p.add("admin.token-file", "%v", err)
		case len(tok) < 16:
			key := "admin.token"
			if a.TokenFile != "" {
				key = "admin.token-file"
			}
			p.add(key, "the token must be at least 16 characters long")
		case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }):
			p.add("admin.token", "the token must be printable ASCII without spaces")
		}
	}
}
