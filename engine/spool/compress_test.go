package spool

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// stored returns the value pebble holds for id's body.
func stored(t *testing.T, s *Store, id string) []byte {
	t.Helper()
	v, closer, err := s.db.Get(bodyKey(id))
	must(t, err, "Get")
	defer closer.Close()
	return bytes.Clone(v)
}

func textBody(n int) []byte {
	words := strings.Fields("the spring collection is here with new arrivals every week for our members and friends")
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("Subject: compressible\r\n\r\n")
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteString(" ")
		if rng.IntN(12) == 0 {
			b.WriteString("\r\n")
		}
	}
	return []byte(b.String())
}

func TestBodiesStoredCompressed(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()

	text := textBody(20 << 10)
	noise := make([]byte, 8<<10)
	for i := range noise {
		noise[i] = byte(rand.Uint32())
	}
	noise[0] = 'X' // a body never starts with NUL
	small := []byte("Subject: s\r\n\r\nhi\r\n")

	must(t, s.Put(ctx, sample("ctext", 1), text), "Put text")
	must(t, s.PutBatch(ctx, []*Message{sample("cb1", 1), sample("cb2", 1), sample("cb3", 1)},
		[][]byte{text, noise, small}), "PutBatch")

	for _, c := range []struct {
		id         string
		body       []byte
		compressed bool
	}{{"ctext", text, true}, {"cb1", text, true}, {"cb2", noise, false}, {"cb3", small, false}} {
		got, err := s.Body(c.id)
		must(t, err, "Body "+c.id)
		if !bytes.Equal(got, c.body) {
			t.Fatalf("%s: Body differs from what was put", c.id)
		}
		v := stored(t, s, c.id)
		if isPacked := bytes.HasPrefix(v, []byte(packMagic)); isPacked != c.compressed {
			t.Fatalf("%s: stored compressed = %v, want %v", c.id, isPacked, c.compressed)
		}
		if c.compressed && len(v) > len(c.body)/2 {
			t.Fatalf("%s: stored %d bytes for %d", c.id, len(v), len(c.body))
		}
	}
}

// A body stored before compression existed (no magic) reads as it is,
// and a damaged compressed body is an error, never other bytes.
func TestBodyOldFormatAndDamage(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	old := textBody(4 << 10)
	must(t, s.Put(ctx, sample("cold", 1), []byte("x")), "Put")
	must(t, s.db.Set(bodyKey("cold"), old, pebble.Sync), "raw Set")
	got, err := s.Body("cold")
	must(t, err, "Body")
	if !bytes.Equal(got, old) {
		t.Fatal("an uncompressed body did not read back as it was")
	}

	must(t, s.Put(ctx, sample("cbad", 1), textBody(4<<10)), "Put")
	v := stored(t, s, "cbad")
	v = v[:len(v)/2] // truncated
	must(t, s.db.Set(bodyKey("cbad"), v, pebble.Sync), "damage")
	if _, err := s.Body("cbad"); !errors.Is(err, errBadPack) {
		t.Fatalf("Body of a damaged compressed body: %v, want errBadPack", err)
	}
	// A damaged length header claiming 4 GiB is refused before any
	// allocation.
	huge := append([]byte(packMagic), 0xff, 0xff, 0xff, 0xff, 0x0f)
	must(t, s.db.Set(bodyKey("cbad"), huge, pebble.Sync), "damage length")
	if _, err := s.Body("cbad"); !errors.Is(err, errBadPack) || !strings.Contains(err.Error(), "claims") {
		t.Fatalf("Body of a body claiming 4 GiB: %v, want errBadPack", err)
	}
}

func TestCompressedAndEncrypted(t *testing.T) {
	s, err := openCipher(t, t.TempDir(), mustCipher(t, newKey(t)))
	must(t, err, "open")
	defer s.Close()
	body := textBody(16 << 10)
	must(t, s.Put(context.Background(), sample("cenc", 1), body), "Put")
	got, err := s.Body("cenc")
	must(t, err, "Body")
	if !bytes.Equal(got, body) {
		t.Fatal("Body differs")
	}
	v := stored(t, s, "cenc")
	if !sealed(v) {
		t.Fatal("body not sealed")
	}
	if len(v) > len(body)/2 {
		t.Fatalf("sealed body of %d bytes for %d: not compressed before sealing", len(v), len(body))
	}
}

// FuzzPackBody: any body survives packing, and unpacking any stored value
// either fails with errBadPack or returns bytes, never panics.
func FuzzPackBody(f *testing.F) {
	f.Add(textBody(2 << 10))
	f.Add([]byte("Subject: x\r\n\r\nshort\r\n"))
	f.Add(append([]byte(packMagic), 0x05, 0x10, 'h', 'e', 'l', 'l', 'o'))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != 0 { // bodies never start with NUL
			var scratch []byte
			got, err := unpackBody(bytes.Clone(packBody(b, &scratch)))
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("round trip of %d bytes: %v", len(b), err)
			}
		}
		if _, err := unpackBody(b); err != nil && !errors.Is(err, errBadPack) {
			t.Fatalf("unpack: %v", err)
		}
	})
}
