package spool

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	rand.Read(k)
	return k
}

func openCipher(t testing.TB, dir string, c *Cipher) (*Store, error) {
	t.Helper()
	return OpenWith(dir, nil, Options{Cipher: c})
}

func mustCipher(t testing.TB, cur []byte, old ...[]byte) *Cipher {
	t.Helper()
	c, err := NewCipher(cur, old...)
	must(t, err, "NewCipher")
	return c
}

// secretMarker appears in the body, sender and recipient of the test
// messages; with encryption it must not appear anywhere on disk.
const secretMarker = "Zq7xSecretMarker"

func secretMessage(id string) (*Message, []byte) {
	m := sample(id, 3)
	m.Env.From = "from-" + secretMarker + "@sender.test"
	m.Rcpts[1].Addr = "rcpt-" + secretMarker + "@rcpt.test"
	return m, []byte("Subject: " + secretMarker + "\r\n\r\nbody " + secretMarker + "\r\n")
}

// grepDir reports whether any file under dir contains s.
func grepDir(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(s)) {
			found = true
		}
		return nil
	})
	return found
}

func TestEncryptedRoundTripAndNothingInClear(t *testing.T) {
	dir := t.TempDir()
	c := mustCipher(t, newKey(t))
	s, err := openCipher(t, dir, c)
	must(t, err, "open")
	m, body := secretMessage("enc1")
	must(t, s.Put(context.Background(), m, body), "Put")
	got, err := s.Body("enc1")
	must(t, err, "Body")
	if !bytes.Equal(got, body) {
		t.Fatalf("Body = %q, want %q", got, body)
	}
	// A recipient update is sealed as well.
	r := m.Rcpts[0]
	r.State, r.LastReply = Delivered, "250 "+secretMarker
	must(t, s.Update("enc1", []int{0}, []Rcpt{r}), "Update")
	must(t, s.Close(), "Close")
	if grepDir(t, dir, secretMarker) {
		t.Fatalf("%q found in clear in the spool files", secretMarker)
	}

	s, err = openCipher(t, dir, c)
	must(t, err, "reopen")
	defer s.Close()
	msgs, _ := scanAll(t, s)
	g := msgs["enc1"]
	if g == nil {
		t.Fatalf("Scan did not return the encrypted message: %v", msgs)
	}
	if g.Env.From != m.Env.From || g.Rcpts[1].Addr != m.Rcpts[1].Addr || g.Rcpts[0].State != Delivered {
		t.Fatalf("Scan = %+v", g)
	}
}

func TestEncryptionKeyRotation(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := newKey(t), newKey(t)
	s, err := openCipher(t, dir, mustCipher(t, k1))
	must(t, err, "open k1")
	m, body := secretMessage("old1")
	must(t, s.Put(context.Background(), m, body), "Put")
	must(t, s.Close(), "Close")

	// k2 seals from now on; k1 is listed as old and still opens old1.
	s, err = openCipher(t, dir, mustCipher(t, k2, k1))
	must(t, err, "open k2+k1")
	m2, body2 := secretMessage("new1")
	must(t, s.Put(context.Background(), m2, body2), "Put new")
	msgs, _ := scanAll(t, s)
	if msgs["old1"] == nil {
		t.Fatalf("message sealed with the old key not recovered")
	}
	for _, id := range []string{"old1", "new1"} {
		if _, err := s.Body(id); err != nil {
			t.Fatalf("Body(%s): %v", id, err)
		}
	}
	must(t, s.Close(), "Close")

	// The key check now names k2: k1 alone is the wrong key.
	if _, err := openCipher(t, dir, mustCipher(t, k1)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with only the retired key: %v, want ErrWrongKey", err)
	}
}

func TestEncryptionWrongOrMissingKey(t *testing.T) {
	dir := t.TempDir()
	s, err := openCipher(t, dir, mustCipher(t, newKey(t)))
	must(t, err, "open")
	m, body := secretMessage("w1")
	must(t, s.Put(context.Background(), m, body), "Put")
	must(t, s.Close(), "Close")

	if _, err := openCipher(t, dir, mustCipher(t, newKey(t))); !errors.Is(err, ErrWrongKey) {
		t.Errorf("wrong key: %v, want ErrWrongKey", err)
	} else if !strings.Contains(err.Error(), "key id") {
		t.Errorf("wrong key error does not name the key ids: %v", err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrEncrypted) {
		t.Errorf("no key: %v, want ErrEncrypted", err)
	}
}

// A spool written in clear stays readable once encryption is turned on; new
// messages are sealed.
func TestEncryptionEnabledOnClearSpool(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	m, body := secretMessage("clear1")
	must(t, s.Put(context.Background(), m, body), "Put")
	must(t, s.Close(), "Close")

	s, err := openCipher(t, dir, mustCipher(t, newKey(t)))
	must(t, err, "open with key")
	defer s.Close()
	msgs, _ := scanAll(t, s)
	if msgs["clear1"] == nil {
		t.Fatal("clear message not recovered after enabling encryption")
	}
	got, err := s.Body("clear1")
	must(t, err, "Body")
	if !bytes.Equal(got, body) {
		t.Fatalf("Body = %q", got)
	}
}

// A sealed record moved under another message's key does not open.
func TestSealedRecordBoundToKey(t *testing.T) {
	c := mustCipher(t, newKey(t))
	v := c.seal(bodyKey("a"), []byte("hello"))
	if _, err := c.open(bodyKey("b"), v); err == nil {
		t.Fatal("a body sealed for a opened as b's")
	}
	v[len(v)-1] ^= 1
	if _, err := c.open(bodyKey("a"), v); err == nil {
		t.Fatal("a tampered record opened")
	}
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	k := newKey(t)
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, data, mode), "write")
		must(t, os.Chmod(p, mode), "chmod")
		return p
	}
	for name, data := range map[string][]byte{
		"raw": k, "hex": []byte(hex.EncodeToString(k) + "\n"), "b64": []byte(base64.StdEncoding.EncodeToString(k) + "\n"),
	} {
		got, err := ReadKeyFile(write(name, data, 0o600))
		if err != nil || !bytes.Equal(got, k) {
			t.Errorf("%s: %x, %v", name, got, err)
		}
	}
	for name, c := range map[string]struct {
		data []byte
		mode os.FileMode
		want string
	}{
		"short":    {[]byte("abcd\n"), 0o600, "not a 32-byte key"},
		"readable": {[]byte(hex.EncodeToString(k)), 0o644, "open to others"},
	} {
		p := write(name, c.data, c.mode)
		_, err := ReadKeyFile(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s and %q", name, err, p, c.want)
		}
		if err != nil && strings.Contains(err.Error(), hex.EncodeToString(k)) {
			t.Errorf("%s: the error shows the key", name)
		}
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}

// BenchmarkPutParallelEncrypted is BenchmarkPutParallel with AES-256-GCM;
// compare the two for the cost of encryption at rest.
func BenchmarkPutParallelEncrypted(b *testing.B) {
	s, err := OpenWith(b.TempDir(), nil, Options{Cipher: mustCipher(b, newKey(b))})
	must(b, err, "open")
	defer s.Close()
	benchParallel(b, s)
}

// BenchmarkBodyEncrypted measures reading a sealed 5 KB body (delivery).
func BenchmarkBodyEncrypted(b *testing.B) {
	for _, enc := range []bool{false, true} {
		name := "clear"
		var c *Cipher
		if enc {
			name, c = "aes-gcm", mustCipher(b, newKey(b))
		}
		b.Run(name, func(b *testing.B) {
			s, err := OpenWith(b.TempDir(), nil, Options{Cipher: c})
			must(b, err, "open")
			defer s.Close()
			id := s.NewID()
			must(b, s.Put(context.Background(), benchMessage(id), bytes.Repeat([]byte("x"), 5<<10)), "Put")
			b.SetBytes(5 << 10)
			b.ResetTimer()
			for range b.N {
				if _, err := s.Body(id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSeal5K is the CPU cost of sealing one 5 KB body.
func BenchmarkSeal5K(b *testing.B) {
	c := mustCipher(b, newKey(b))
	body := bytes.Repeat([]byte("x"), 5<<10)
	k := bodyKey("00VcFgbL41blhVHhvn")
	b.SetBytes(int64(len(body)))
	for range b.N {
		c.seal(k, body)
	}
}
