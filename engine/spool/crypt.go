package spool

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
)

// Encryption at rest. With a Cipher, every body, envelope and recipient
// record is sealed with AES-256-GCM before it reaches pebble (and so the WAL,
// memtables and sstables): a sealed value is
//
//	magic "\x00SE" | key id (4 bytes) | nonce (12 bytes) | ciphertext+tag
//
// The key id is the first 4 bytes of SHA-256(key), so the right key is found
// without trial decryption, and the pebble key of the record is the
// additional data, so a sealed value cannot be moved to another message.
// Records written before encryption was turned on stay readable: a value
// without the magic is plaintext (an envelope or recipient record starts
// with its version byte 1, and a body never starts with NUL, which the
// listener refuses). Counters are not message data and stay in clear.
//
// Keys rotate by listing old keys: the first key seals, every key opens.
// A marker record ("x/keycheck") sealed with the current key lets Open tell
// a wrong or missing key at start-up instead of failing on each message.

const (
	sealMagic    = "\x00SE"
	keyIDLen     = 4
	sealOverhead = len(sealMagic) + keyIDLen + 12 + 16
)

// KeySize is the length of an encryption key: 32 bytes for AES-256.
const KeySize = 32

// Errors about keys; test with errors.Is.
var (
	// ErrNoKey means a sealed record names a key id the Cipher does not hold
	// (the key was removed from old-key-files too early, or is wrong).
	ErrNoKey = errors.New("spool: no key for encrypted record")
	// ErrEncrypted means the spool holds encrypted records but no Cipher
	// was given to Open.
	ErrEncrypted = errors.New("spool: the spool is encrypted and no encryption key is configured")
	// ErrWrongKey means no key of the Cipher opens the spool's key check.
	ErrWrongKey = errors.New("spool: no configured key matches the spool's encryption key")
)

var keyCheckKey = []byte("x/keycheck")

const keyCheckPlain = "sluice spool key check v1"

// Cipher seals and opens spool records. It is safe for concurrent use.
type Cipher struct {
	current keyedAEAD
	byID    map[[keyIDLen]byte]cipher.AEAD
}

type keyedAEAD struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

// NewCipher returns a Cipher that seals with current and opens records
// sealed with current or any of old. Every key must be KeySize bytes.
func NewCipher(current []byte, old ...[]byte) (*Cipher, error) {
	c := &Cipher{byID: map[[keyIDLen]byte]cipher.AEAD{}}
	for i, k := range append([][]byte{current}, old...) {
		ka, err := newKeyed(k)
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("spool: current key: %w", err)
			}
			return nil, fmt.Errorf("spool: old key %d: %w", i, err)
		}
		if i == 0 {
			c.current = ka
		}
		if _, dup := c.byID[ka.id]; !dup {
			c.byID[ka.id] = ka.aead
		}
	}
	return c, nil
}

func newKeyed(k []byte) (keyedAEAD, error) {
	if len(k) != KeySize {
		return keyedAEAD{}, fmt.Errorf("key is %d bytes, want %d (AES-256)", len(k), KeySize)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return keyedAEAD{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return keyedAEAD{}, err
	}
	sum := sha256.Sum256(k)
	var ka keyedAEAD
	copy(ka.id[:], sum[:keyIDLen])
	ka.aead = aead
	return ka, nil
}

// KeyID returns the hex id of the sealing key, as logged and as named in
// errors; it identifies a key without revealing it.
func (c *Cipher) KeyID() string { return hex.EncodeToString(c.current.id[:]) }

// seal encrypts plain for the record stored under key.
func (c *Cipher) seal(key, plain []byte) []byte {
	out := make([]byte, 0, len(plain)+sealOverhead)
	out = append(out, sealMagic...)
	out = append(out, c.current.id[:]...)
	nonce := out[len(out) : len(out)+12]
	if _, err := rand.Read(nonce); err != nil {
		// crypto/rand does not fail on Linux; never seal with a fixed nonce.
		panic(fmt.Sprintf("spool: crypto/rand: %v", err))
	}
	out = out[:len(out)+12]
	return c.current.aead.Seal(out, nonce, plain, key)
}

// sealed reports whether v carries the sealed-record magic.
func sealed(v []byte) bool {
	return len(v) >= len(sealMagic) && string(v[:len(sealMagic)]) == sealMagic
}

// open decrypts a sealed value; a value without the magic is returned as is
// (written before encryption was enabled).
func (c *Cipher) open(key, v []byte) ([]byte, error) {
	if !sealed(v) {
		return v, nil
	}
	if len(v) < sealOverhead {
		return nil, fmt.Errorf("%w: sealed record of %d bytes", errCorrupt, len(v))
	}
	var id [keyIDLen]byte
	copy(id[:], v[len(sealMagic):])
	aead := c.byID[id]
	if aead == nil {
		return nil, fmt.Errorf("%w: key id %x", ErrNoKey, id)
	}
	nonce := v[len(sealMagic)+keyIDLen : len(sealMagic)+keyIDLen+12]
	plain, err := aead.Open(nil, nonce, v[len(sealMagic)+keyIDLen+12:], key)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (key id %x)", errCorrupt, id)
	}
	return plain, nil
}

// sealValue seals v for key when s encrypts, and returns v otherwise.
func (s *Store) sealValue(key, v []byte) []byte {
	if s.cipher == nil {
		return v
	}
	return s.cipher.seal(key, v)
}

// openValue is the inverse of sealValue. Without a Cipher a sealed value is
// an error wrapping ErrEncrypted.
func (s *Store) openValue(key, v []byte) ([]byte, error) {
	if s.cipher == nil {
		if sealed(v) {
			return nil, ErrEncrypted
		}
		return v, nil
	}
	return s.cipher.open(key, v)
}

// checkKeys compares the configured Cipher with the key check stored in
// the spool, and records the current key there. It is called by Open.
func checkKeys(db *pebble.DB, c *Cipher) error {
	v, closer, err := db.Get(keyCheckKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		v = nil
	case err != nil:
		return fmt.Errorf("spool: read key check: %w", err)
	default:
		v = bytes.Clone(v)
		closer.Close()
	}
	if c == nil {
		if v != nil {
			return fmt.Errorf("%w (key id %x)", ErrEncrypted, v[len(sealMagic):len(sealMagic)+keyIDLen])
		}
		return nil
	}
	if v != nil {
		plain, err := c.open(keyCheckKey, v)
		if errors.Is(err, ErrNoKey) || err == nil && string(plain) != keyCheckPlain {
			return fmt.Errorf("%w: the spool was last sealed with key id %x; configured key ids: %s",
				ErrWrongKey, v[len(sealMagic):len(sealMagic)+keyIDLen], c.ids())
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrWrongKey, err)
		}
		if bytes.Equal(v[len(sealMagic):len(sealMagic)+keyIDLen], c.current.id[:]) {
			return nil
		}
	}
	if err := db.Set(keyCheckKey, c.seal(keyCheckKey, []byte(keyCheckPlain)), pebble.Sync); err != nil {
		return fmt.Errorf("spool: write key check: %w", err)
	}
	return nil
}

func (c *Cipher) ids() string {
	var b bytes.Buffer
	b.WriteString(c.KeyID())
	for id := range c.byID {
		if id != c.current.id {
			fmt.Fprintf(&b, ", %x", id)
		}
	}
	return b.String()
}

// ReadKeyFile reads an encryption key from path: 32 raw bytes, or 64 hex
// digits, or the standard base64 of 32 bytes (with or without a trailing
// newline). Errors name the file and never include its contents. A file
// that others (not owner, not group) may access is refused: 0600, or 0640
// owned by root and the daemon's group.
func ReadKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("%s: key file mode %04o is open to others; chmod 600 (or 640) it", path, fi.Mode().Perm())
	}
	if fi.Size() > 1024 {
		return nil, fmt.Errorf("%s: %d bytes is not a key file", path, fi.Size())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(raw) == KeySize {
		return raw, nil
	}
	text := bytes.TrimSpace(raw)
	if k, err := hex.DecodeString(string(text)); err == nil && len(k) == KeySize {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(string(text)); err == nil && len(k) == KeySize {
		return k, nil
	}
	return nil, fmt.Errorf("%s: not a 32-byte key (want 32 raw bytes, 64 hex digits or base64; e.g. `openssl rand -hex 32`)", path)
}
