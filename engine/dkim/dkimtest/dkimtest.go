// Package dkimtest helps tests check DKIM signatures independently: it
// makes keys, serves their records, and verifies messages both with
// go-msgauth and with dkimpy (Debian's python3-dkim) run as a real
// process. It imports "testing" only for testing.TB.
package dkimtest

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"embed"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/sluice-mta/sluice/engine/dkim"
)

// RSAKey generates an RSA key of bits bits.
func RSAKey(tb testing.TB, bits int) *rsa.PrivateKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// Ed25519Key generates an Ed25519 key.
func Ed25519Key(tb testing.TB) ed25519.PrivateKey {
	tb.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// WritePEM writes k to dir/name as PEM: PKCS#8, or PKCS#1 for an RSA key
// when pkcs1 is set. It returns the path.
func WritePEM(tb testing.TB, dir, name string, k crypto.Signer, pkcs1 bool) string {
	tb.Helper()
	var b *pem.Block
	if rk, ok := k.(*rsa.PrivateKey); ok && pkcs1 {
		b = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}
	} else {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			tb.Fatal(err)
		}
		b = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(b), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Records maps "selector._domainkey.domain" (no final dot, lower case) to
// the TXT record published there.
type Records map[string]string

// Add publishes k's public half for domain and selector.
func (r Records) Add(tb testing.TB, domain, selector string, k crypto.Signer) {
	tb.Helper()
	rec, err := dkim.PublicRecord(k.Public())
	if err != nil {
		tb.Fatal(err)
	}
	r[strings.ToLower(selector+"._domainkey."+domain)] = rec
}

func (r Records) lookup(name string) ([]string, error) {
	if v, ok := r[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
		return []string{v}, nil
	}
	return nil, fmt.Errorf("no TXT record for %s", name)
}

// Result is the outcome of one signature.
type Result struct {
	Domain, Selector string
	OK               bool
	Err              string
}

// VerifyGo verifies every signature of msg with go-msgauth.
func VerifyGo(msg []byte, recs Records) ([]Result, error) {
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: recs.lookup})
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(vs))
	for i, v := range vs {
		out[i] = Result{Domain: v.Domain, OK: v.Err == nil}
		if v.Err != nil {
			out[i].Err = v.Err.Error()
		}
	}
	return out, nil
}

// verifyPy reads {"records": {...}, "messages": [base64...]} on stdin and
// prints, per message, a list of [domain, selector, ok, error] per
// DKIM-Signature, verified with dkim.DKIM(msg).verify(idx=i, dnsfunc=...).
const verifyPy = `
import base64, json, sys
import dkim
req = json.load(sys.stdin)
recs = {k.lower(): v for k, v in req["records"].items()}
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    v = recs.get(name.lower().rstrip("."))
    return v.encode() if v is not None else None
out = []
for m64 in req["messages"]:
    msg = base64.b64decode(m64)
    d = dkim.DKIM(msg, minkey=1024)
    n = sum(1 for (k, _) in d.headers if k.lower() == b"dkim-signature")
    res = []
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
            err = ""
        except Exception as e:
            ok, err = False, repr(e)
        sig = dkim.util.parse_tag_value([v for (k, v) in d.headers if k.lower() == b"dkim-signature"][i])
        res.append([sig.get(b"d", b"").decode(), sig.get(b"s", b"").decode(), bool(ok), err])
    out.append(res)
json.dump(out, sys.stdout)
`

// Python returns the interpreter that has dkimpy: Debian's /usr/bin/python3
// first (python3-dkim installs there), then python3 on the PATH. Without
// one the test is skipped, or fails when CI is set.
func Python(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import dkim").Run() == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		tb.Fatal("python3 with dkimpy is not installed (apt-get install python3-dkim; CI requires it)")
	}
	tb.Skip("python3 with dkimpy is not installed (apt-get install python3-dkim); skipping")
	return ""
}

// VerifyPython verifies every signature of each message with dkimpy, in
// one python3 process.
func VerifyPython(tb testing.TB, msgs [][]byte, recs Records) ([][]Result, error) {
	tb.Helper()
	py := "/usr/bin/python3" // where python3-dkim installs; probing first would start python twice
	if _, err := os.Stat(py); err != nil {
		py = Python(tb)
	}
	req := struct {
		Records  Records  `json:"records"`
		Messages []string `json:"messages"`
	}{Records: recs}
	for _, m := range msgs {
		req.Messages = append(req.Messages, base64.StdEncoding.EncodeToString(m))
	}
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(py, "-c", verifyPy)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if strings.Contains(stderr.String(), "No module named 'dkim'") {
			Python(tb) // skips, or fails in CI
		}
		return nil, fmt.Errorf("python3 dkim: %v: %s", err, stderr.String())
	}
	var raw [][][4]any
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("python3 dkim output: %v: %s", err, out)
	}
	if len(raw) != len(msgs) {
		return nil, errors.New("python3 dkim: wrong number of results")
	}
	res := make([][]Result, len(raw))
	for i, rs := range raw {
		for _, r := range rs {
			d, _ := r[0].(string)
			s, _ := r[1].(string)
			ok, _ := r[2].(bool)
			e, _ := r[3].(string)
			res[i] = append(res[i], Result{Domain: d, Selector: s, OK: ok, Err: e})
		}
	}
	return res, nil
}

// Test keys, made with openssl for tests only: "rsa2048.pem",
// "rsa2048-other.pem" and "ed25519.pem" (PKCS#8), "rsa1024-pkcs1.pem" and
// "rsa512-pkcs1.pem" (PKCS#1, the last too small to sign with).
//
//go:embed testdata/*.pem
var keyFiles embed.FS

// KeyPEM returns the PEM text of the named test key.
func KeyPEM(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := keyFiles.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Key returns the named test key, parsed.
func Key(tb testing.TB, name string) crypto.Signer {
	tb.Helper()
	b, _ := pem.Decode(KeyPEM(tb, name))
	var k any
	var err error
	if b.Type == "RSA PRIVATE KEY" {
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	} else {
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return k.(crypto.Signer)
}

// KeyFile writes the named test key into dir and returns its path.
func KeyFile(tb testing.TB, dir, name string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, KeyPEM(tb, name), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}
