package config

import (
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/engine/dkim/dkimtest"
)

const dkimBase = `hostname = "mta.example.test"
[[listener]]
address = "127.0.0.1:2525"
`

func TestDKIMKeysLoad(t *testing.T) {
	dir := t.TempDir()
	rsa8 := dkimtest.KeyFile(t, dir, "rsa2048.pem")
	rsa1 := dkimtest.KeyFile(t, dir, "rsa1024-pkcs1.pem")
	ed := dkimtest.KeyFile(t, dir, "ed25519.pem")
	c := mustLoad(t, dkimBase+fmt.Sprintf(`
[[dkim-key]]
domain = "Example.Test."
selector = "s2048"
key-file = %q
[[dkim-key]]
domain = "example.test"
selector = "ed"
key-file = %q
[[dkim-key]]
domain = "other.test"
selector = "old"
key-file = %q
[dkim]
default-domain = "example.test"
[doctor]
domains = ["news.example.test"]
`, rsa8, ed, rsa1))
	if len(c.DKIMKeys) != 3 || c.DKIMKeys[0].Domain != "example.test" || c.DKIM.DefaultDomain != "example.test" {
		t.Fatalf("keys %+v, dkim %+v", c.DKIMKeys, c.DKIM)
	}
	if _, ok := c.DKIMKeys[0].Signer().(*rsa.PrivateKey); !ok {
		t.Errorf("key 0 is %T", c.DKIMKeys[0].Signer())
	}
	if _, ok := c.DKIMKeys[1].Signer().(ed25519.PrivateKey); !ok {
		t.Errorf("key 1 is %T", c.DKIMKeys[1].Signer())
	}
	if k, ok := c.DKIMKeys[2].Signer().(*rsa.PrivateKey); !ok || k.N.BitLen() != 1024 {
		t.Errorf("key 2 is %T", c.DKIMKeys[2].Signer())
	}
	if len(c.Doctor.Domains) != 1 {
		t.Errorf("doctor %+v", c.Doctor)
	}
	// Printing the config must not print the key.
	d := c.DKIMKeys[0].Signer().(*rsa.PrivateKey).D.String()
	if s := fmt.Sprintf("%+v %v %#v", c, c.DKIMKeys, c.DKIMKeys[0]); strings.Contains(s, d[:20]) {
		t.Error("printing the config shows the private key")
	}
}

func TestDKIMKeyErrors(t *testing.T) {
	dir := t.TempDir()
	small := dkimtest.KeyFile(t, dir, "rsa512-pkcs1.pem")
	good := dkimtest.KeyFile(t, dir, "rsa2048.pem")
	for _, tc := range []struct{ name, body, want string }{
		{"missing file", fmt.Sprintf("[[dkim-key]]\ndomain = \"a.test\"\nselector = \"s\"\nkey-file = %q\n", filepath.Join(dir, "nope.pem")),
			"dkim-key[0].key-file: " + filepath.Join(dir, "nope.pem") + ": no such file or directory (line 7)"},
		{"small key", fmt.Sprintf("[[dkim-key]]\ndomain = \"a.test\"\nselector = \"s\"\nkey-file = %q\n", small),
			"dkim-key[0].key-file: " + small + ": RSA key of 512 bits; DKIM needs at least 1024"},
		{"not a key", fmt.Sprintf("[[dkim-key]]\ndomain = \"a.test\"\nselector = \"s\"\nkey-file = %q\n", writeConfig(t, "hello")),
			"no PEM private key found (line 7)"},
		{"no key-file", "[[dkim-key]]\ndomain = \"a.test\"\nselector = \"s\"\n", "dkim-key[0].key-file: required (line 4)"},
		{"bad selector", fmt.Sprintf("[[dkim-key]]\ndomain = \"a.test\"\nselector = \"s 1\"\nkey-file = %q\n", good), `dkim-key[0].selector: "s 1" is not a DNS name (line 6)`},
		{"duplicate", fmt.Sprintf("[[dkim-key]]\ndomain = \"a.test\"\nselector = \"s\"\nkey-file = %q\n[[dkim-key]]\ndomain = \"A.test\"\nselector = \"s\"\nkey-file = %q\n", good, good),
			`dkim-key[1].selector: domain "a.test" selector "s" is also dkim-key[0]'s (line 10)`},
		{"default without key", "[dkim]\ndefault-domain = \"x.test\"\n", `dkim.default-domain: "x.test" has no [[dkim-key]] (line 5)`},
		{"unknown key", "[dkim]\nselector = \"x\"\n", `unknown key "dkim.selector"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, dkimBase+tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Error("the error shows key material")
			}
		})
	}
}
