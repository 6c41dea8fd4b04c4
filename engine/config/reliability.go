package config

import (
	"fmt"
	"os"
	"time"

	"github.com/BurntSushi/toml"
)

// Spool configures encryption at rest of the spool (AES-256-GCM of bodies,
// envelopes and recipient records). Without encryption-key-file the spool is
// stored in clear.
type Spool struct {
	// EncryptionKeyFile holds the key that seals new records: 32 raw bytes,
	// 64 hex digits or base64 (`openssl rand -hex 32`), mode 0600.
	EncryptionKeyFile string `toml:"encryption-key-file"`
	// OldKeyFiles are earlier keys, still used to open records sealed
	// with them: list the previous key here when rotating.
	OldKeyFiles []string `toml:"old-key-files"`
	// MinFreeSpace is kept free on the spool's filesystem: below it new
	// messages get 452 4.3.1 [64M]; "0" uses the default.
	MinFreeSpace Size `toml:"min-free-space"`
}

// Defaults of the hostile-client limits of a [[listener]].
const (
	DefaultMaxSessionsPerIP = 20
	// RFC 5321 §4.5.3.2.7: a server SHOULD wait at least 5 minutes for
	// the next command; the same bound applies to each DATA line.
	DefaultListenerCommandTimeout = Duration(5 * time.Minute)
)

// validateReliability fills the listener limits' defaults and checks them
// and [spool].
func (c *Config) validateReliability(p *problems, md *toml.MetaData) {
	for i := range c.Listeners {
		l := &c.Listeners[i]
		k := fmt.Sprintf("listener[%d]", i)
		switch {
		case l.MaxSessionsPerIP < 0:
			p.add(k+".max-sessions-per-ip", "must not be negative")
		case l.MaxSessionsPerIP == 0:
			l.MaxSessionsPerIP = DefaultMaxSessionsPerIP
		}
		for _, d := range []struct {
			key string
			v   *Duration
			def Duration
		}{
			{"command-timeout", &l.CommandTimeout, DefaultListenerCommandTimeout},
		} {
			switch {
			case *d.v < 0:
				p.add(k+"."+d.key, "must not be negative")
			case *d.v == 0:
				*d.v = d.def
			}
		}
	}
	s := &c.Spool
	if s.MinFreeSpace < 0 {
		p.add("spool.min-free-space", "must not be negative")
	}
	if len(s.OldKeyFiles) > 0 && s.EncryptionKeyFile == "" {
		p.add("spool.old-key-files", "needs spool.encryption-key-file (the key that seals new records)")
	}
	check := func(key, path string) {
		if path == "" {
			p.add(key, "empty path")
			return
		}
		if _, err := os.Stat(path); err != nil {
			p.add(key, "%v", err)
		}
	}
	if s.EncryptionKeyFile != "" {
		check("spool.encryption-key-file", s.EncryptionKeyFile)
	}
	for i, f := range s.OldKeyFiles {
		check(fmt.Sprintf("spool.old-key-files[%d]", i), f)
	}
}
