package config

import (
	"fmt"
	"os"
	"strings"
)

// Inject configures campaign injection over HTTP (POST /api/v1/inject on
// the admin listener). The admin token is always accepted; token (or
// token-file) adds one that may inject but not administer.
type Inject struct {
	Token     string `toml:"token"`            // bearer token for injection only
	TokenFile string `toml:"token-file"`       // or a file holding it (first line)
	MaxBody   Size   `toml:"max-request-size"` // [64M] largest request body
}

// TokenValue returns the injection token: token, or the first line of
// token-file; "" when neither is set.
func (in *Inject) TokenValue() (string, error) {
	if in.TokenFile == "" {
		return in.Token, nil
	}
	b, err := os.ReadFile(in.TokenFile)
	if err != nil {
		return "", err
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("%s: larger than %d bytes", in.TokenFile, maxTokenFile)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

// validateInject checks [inject]; messages never include the token.
func (c *Config) validateInject(p *problems) {
	in := &c.Inject
	if in.Token != "" && in.TokenFile != "" {
		p.add("inject.token-file", "set token or token-file, not both")
	}
	if in.Token != "" || in.TokenFile != "" {
		key := "inject.token"
		if in.TokenFile != "" {
			key = "inject.token-file"
		}
		tok, err := in.TokenValue()
		switch {
		case err != nil:
			p.add(key, "%v", err)
		case len(tok) < 16:
			p.add(key, "the token must be at least 16 characters long")
		case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }):
			p.add(key, "the token must be printable ASCII without spaces")
		case c.Admin == nil:
			p.add(key, "needs an [admin] table: injection is served on the admin listener")
		}
	}
}
