package config

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

// Authentication holds the keys Sluice signs with and the domains
// `sluice doctor` checks. It is embedded in Config, so its tables are
// top-level: [[dkim-key]], [dkim] and [doctor].
type Authentication struct {
	DKIMKeys []DKIMKey `toml:"dkim-key"`
	DKIM     DKIM      `toml:"dkim"`
	Doctor   Doctor    `toml:"doctor"`
}

// DKIMKey is one signing key (RFC 6376): mail whose From domain is Domain
// is signed with it, as d=Domain s=Selector. Load reads and checks the key.
type DKIMKey struct {
	Domain   string `toml:"domain"`
	Selector string `toml:"selector"`
	KeyFile  string `toml:"key-file"` // PEM: PKCS#1 or PKCS#8 RSA (≥ 1024 bits), or PKCS#8 Ed25519

	// key is set by Load. A pointer, so that printing a Config shows an
	// address and never the key.
	key *privateKey
}

// privateKey wraps a loaded key so that it never prints.
type privateKey struct{ s crypto.Signer }

// Signer returns the key Load read from KeyFile: an *rsa.PrivateKey or an
// ed25519.PrivateKey. Never log it.
func (k DKIMKey) Signer() crypto.Signer {
	if k.key == nil {
		return nil
	}
	return k.key.s
}

// DKIM holds signing settings that are not per key.
type DKIM struct {
	// DefaultDomain signs mail whose From domain has no key of its own with
	// this domain's keys. "" leaves such mail unsigned.
	DefaultDomain string `toml:"default-domain"`
}

// Doctor lists what `sluice doctor` checks beyond the configured keys.
type Doctor struct {
	Domains []string `toml:"domains"` // more sending domains (From and return-path)
}

// maxKeyFile bounds what is read of a key file; a 4096-bit PEM is 3 KB.
const maxKeyFile = 64 << 10

// minRSABits is the smallest RSA key Sluice signs with (RFC 8301 §3.2).
const minRSABits = 1024

func (c *Config) validateDKIM(p *problems) {
	seen := map[string]int{}
	domains := map[string]bool{}
	for i := range c.DKIMKeys {
		k := &c.DKIMKeys[i]
		key := fmt.Sprintf("dkim-key[%d]", i)
		k.Domain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(k.Domain)), ".")
		k.Selector = strings.ToLower(strings.TrimSpace(k.Selector))
		if err := checkDNSName(k.Domain); err != nil {
			p.add(key+".domain", "%v", err)
		}
		if err := checkDNSName(k.Selector); err != nil {
			p.add(key+".selector", "%v", err)
		}
		id := k.Selector + "._domainkey." + k.Domain
		if j, dup := seen[id]; dup && k.Domain != "" && k.Selector != "" {
			p.add(key+".selector", "domain %q selector %q is also dkim-key[%d]'s", k.Domain, k.Selector, j)
		} else {
			seen[id] = i
		}
		domains[k.Domain] = true
		if k.KeyFile == "" {
			p.add(key+".key-file", "required")
			continue
		}
		s, err := readPrivateKey(k.KeyFile)
		if err != nil {
			p.add(key+".key-file", "%s: %v", k.KeyFile, err)
			continue
		}
		k.key = &privateKey{s}
	}
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(c.DKIM.DefaultDomain)), ".")
	c.DKIM.DefaultDomain = d
	if d != "" && !domains[d] {
		p.add("dkim.default-domain", "%q has no [[dkim-key]]", d)
	}
	for i, name := range c.Doctor.Domains {
		if err := checkDNSName(strings.TrimSuffix(name, ".")); err != nil {
			p.add(fmt.Sprintf("doctor.domains[%d]", i), "%v", err)
		}
	}
}

// checkDNSName accepts a non-empty name of letters, digits, hyphens,
// underscores and dots.
func checkDNSName(s string) error {
	if s == "" {
		return errors.New("required")
	}
	bad := strings.ContainsFunc(s, func(r rune) bool {
		return r > unicode.MaxASCII || !(r == '.' || r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r))
	})
	if bad || strings.HasPrefix(s, ".") || strings.Contains(s, "..") || len(s) > 253 {
		return fmt.Errorf("%q is not a DNS name", s)
	}
	return nil
}

// readPrivateKey reads a PEM private key: PKCS#1 RSA ("RSA PRIVATE KEY"),
// or PKCS#8 ("PRIVATE KEY") holding RSA or Ed25519 (RFC 8463). Errors
// describe the file's content, never the key.
func readPrivateKey(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, pe.Err // the path is already in the message
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("larger than %d bytes: not a key file", maxKeyFile)
	}
	return ParsePrivateKey(data)
}

// ParsePrivateKey parses a PEM private key as a [[dkim-key]] key-file holds
// it and checks that it is fit for DKIM: RSA of at least 1024 bits, or
// Ed25519.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key found")
		}
		var key any
		var err error
		switch b.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted; store it unencrypted with restricted file permissions")
		default:
			continue // certificates, parameters: look further
		}
		if err != nil {
			return nil, fmt.Errorf("%s: malformed key", strings.ToLower(b.Type))
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			if n := k.N.BitLen(); n < minRSABits {
				return nil, fmt.Errorf("RSA key of %d bits; DKIM needs at least %d (2048 recommended)", n, minRSABits)
			}
			k.Precompute()
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("%T keys are not used by DKIM; use RSA or Ed25519", key)
		}
	}
}
