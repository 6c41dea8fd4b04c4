package dkim_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/engine/dkim"
	"github.com/sluice-mta/sluice/engine/dkim/dkimtest"
)

func benchMessage() []byte {
	return append(message("news@example.test"), strings.Repeat(strings.Repeat("x", 76)+"\r\n", 64)...)
}

// BenchmarkSign measures one signature of a 5 KB message per key type;
// RSA-2048 is the signing ceiling of the bench dkim scenario.
func BenchmarkSign(b *testing.B) {
	for _, name := range []string{"rsa2048.pem", "ed25519.pem"} {
		b.Run(strings.TrimSuffix(name, ".pem"), func(b *testing.B) {
			s, err := dkim.New(dkim.Options{Keys: []dkim.Key{{Domain: "example.test", Selector: "s", Signer: dkimtest.Key(b, name)}}})
			if err != nil {
				b.Fatal(err)
			}
			msg := benchMessage()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := s.Sign(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRSA is the bare RSA-2048 PKCS#1 v1.5 signature, for comparison.
func BenchmarkRSA(b *testing.B) {
	k := dkimtest.Key(b, "rsa2048.pem").(*rsa.PrivateKey)
	h := sha256.Sum256([]byte("x"))
	for b.Loop() {
		if _, err := k.Sign(rand.Reader, h[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}
