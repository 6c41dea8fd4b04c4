package trace

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

var (
	key1 = []byte("0123456789abcdef0123456789abcdef")
	key2 = []byte("fedcba9876543210fedcba9876543210")
	key3 = []byte("another-secret-of-enough-length!")
)

// typical has the sizes the header is designed for: recipient 30 characters,
// job 10, VMTA 5, source 15 (an IPv4 address), message id 18 (engine/spool).
var typical = Ref{
	Rcpt:   "firstname.lastname@example.com",
	JobID:  "spring-26a",
	VMTA:   "vmta1",
	Source: "192.168.100.201",
	MsgID:  "0mGz1kQx3Ab9ZcY7Lp",
}

func TestRoundTrip(t *testing.T) {
	k := Keys{Current: key1}
	cases := []Ref{
		typical,
		{},
		{Rcpt: "a@b.test"},
		{Rcpt: "no-at-sign", JobID: "j"},
		{Rcpt: "trailing@", VMTA: "v"},
		{Rcpt: "@leading.test"},
		{Rcpt: "user+tag_x@Example.COM", JobID: "job with spaces", VMTA: "pool/a:1", Source: "inbound-relay", MsgID: "id"},
		{Rcpt: `"quoted local"@example.org`, Source: "2001:db8::25", MsgID: strings.Repeat("Z", 18)},
		{Rcpt: "ü@bücher.example", Source: "::ffff:192.0.2.1", JobID: "日本"},
		{Source: "010.0.0.1"}, // not canonical: kept as text
		{Source: "fe80::1%eth0"},
		{Rcpt: "a@b@c.test", MsgID: "x.y-z"},
		{Rcpt: strings.Repeat("l", 64) + "@" + strings.Repeat("d", 200) + ".test", JobID: strings.Repeat("j", 100)},
	}
	for _, r := range cases {
		v := Encode(r, k)
		got, err := Decode(v, k)
		if err != nil {
			t.Errorf("Decode(Encode(%+v)) = %v", r, err)
			continue
		}
		if got != r {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
		}
		if strings.ContainsAny(v, " \t\r\n=+/") {
			t.Errorf("value %q is not header-safe base64url", v)
		}
	}
}

func TestLength(t *testing.T) {
	k := Keys{Current: key1}
	v := Encode(typical, k)
	t.Logf("typical value: %d characters: %s: %s", len(v), HeaderName, v)
	if len(v) > 120 {
		t.Errorf("typical value is %d characters, want at most 120", len(v))
	}
	// A text source of the same length is still within bounds.
	r := typical
	r.Source = "relay-pool-07.x"
	if v := Encode(r, k); len(v) > 120 {
		t.Errorf("value with a 15-character named source is %d characters, want at most 120", len(v))
	}
	// Fields that cannot be packed cost more, but stay usable.
	r = Ref{Rcpt: "first_name+tag@example.com", JobID: "job_2026_04", VMTA: "v_1", Source: "src_a", MsgID: "0mGz1kQx3Ab9ZcY7Lp"}
	t.Logf("unpackable fields: %d characters", len(Encode(r, k)))
}

func TestTamperEveryCharacter(t *testing.T) {
	k := Keys{Current: key1}
	v := Encode(typical, k)
	const b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(v); i++ {
		for _, c := range []byte(b64chars + "=!. ") {
			if c == v[i] {
				continue
			}
			bad := v[:i] + string(c) + v[i+1:]
			if _, err := Decode(bad, k); !errors.Is(err, ErrForged) {
				t.Fatalf("character %d changed to %q: err = %v, want ErrForged", i, c, err)
			}
		}
	}
	for _, bad := range []string{v[:len(v)-1], v[1:], v + "A", v + v, "", "AAAA"} {
		if _, err := Decode(bad, k); !errors.Is(err, ErrForged) {
			t.Errorf("Decode(%q) = %v, want ErrForged", bad, err)
		}
	}
}

func TestTamperEveryBit(t *testing.T) {
	k := Keys{Current: key1}
	raw, err := base64.RawURLEncoding.DecodeString(Encode(typical, k))
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for bit := 0; bit < 8; bit++ {
			b := bytes.Clone(raw)
			b[i] ^= 1 << bit
			if _, err := Decode(base64.RawURLEncoding.EncodeToString(b), k); !errors.Is(err, ErrForged) {
				t.Fatalf("byte %d bit %d flipped: err = %v, want ErrForged", i, bit, err)
			}
		}
	}
}

func TestRotation(t *testing.T) {
	old := Encode(typical, Keys{Current: key1})
	cur := Encode(typical, Keys{Current: key2, Old: [][]byte{key1}})
	rotated := Keys{Current: key2, Old: [][]byte{key3, key1}}
	for name, v := range map[string]string{"old key": old, "current key": cur} {
		if r, err := Decode(v, rotated); err != nil || r != typical {
			t.Errorf("%s: Decode = %+v, %v", name, r, err)
		}
	}
	if _, err := Decode(old, Keys{Current: key2}); !errors.Is(err, ErrForged) {
		t.Errorf("retired key still accepted: %v", err)
	}
	if _, err := Decode(cur, Keys{Current: key1}); !errors.Is(err, ErrForged) {
		t.Errorf("value under another key accepted: %v", err)
	}
}

func TestEmptyKeyNeverAccepted(t *testing.T) {
	v := Encode(typical, Keys{})
	for _, k := range []Keys{{}, {Old: [][]byte{nil}}, {Current: []byte{}}} {
		if _, err := Decode(v, k); !errors.Is(err, ErrForged) {
			t.Errorf("Decode with %+v = %v, want ErrForged", k, err)
		}
	}
}

func TestUnknownVersionIsMalformed(t *testing.T) {
	// Only the key holder can make this; it stands for a newer Sluice.
	p := appendPayload(nil, typical)
	p[0] = 2
	p = append(p, sum(key1, p)...)
	if _, err := Decode(b64.EncodeToString(p), Keys{Current: key1}); !errors.Is(err, ErrMalformed) {
		t.Errorf("err = %v, want ErrMalformed", err)
	}
	for _, p := range [][]byte{{version1, 0xc0}, {version1, 0, 5}, append(appendPayload(nil, typical), 0)} {
		p = append(p, sum(key1, p)...)
		if _, err := Decode(b64.EncodeToString(p), Keys{Current: key1}); !errors.Is(err, ErrMalformed) {
			t.Errorf("payload %x: err = %v, want ErrMalformed", p, err)
		}
	}
}

func TestKeysCheck(t *testing.T) {
	if err := (Keys{Current: key1, Old: [][]byte{key2}}).Check(); err != nil {
		t.Errorf("good keys: %v", err)
	}
	for _, k := range []Keys{{}, {Current: []byte("short")}, {Current: key1, Old: [][]byte{[]byte("x")}}} {
		if err := k.Check(); err == nil {
			t.Errorf("Check(%+v) = nil, want an error", k)
		}
	}
}

func TestFeedbackID(t *testing.T) {
	cases := []struct{ job, source, sender, want string }{
		{"spring", "192.0.2.1", "sluice", "spring:192.0.2.1:sluice"},
		{"a:b", "src", "esp", "a-b:src:esp"},
		{"", "src", "esp", "src:esp"},
		{"job", "", "esp", "job:esp"},
		{"", "", "esp", "esp"},
		{"job", "src", "", ""},
		{"job", "src", " : ", "job:src:-"},
		{"j o\tb", "sr\xffc", "es\x00p", "j-o-b:sr-c:es-p"},
		{"2001:db8::1", "x", "y", "2001-db8--1:x:y"},
		{strings.Repeat("j", 100), "s", "e", strings.Repeat("j", 64) + ":s:e"},
	}
	for _, c := range cases {
		if got := FeedbackID(c.job, c.source, c.sender); got != c.want {
			t.Errorf("FeedbackID(%q, %q, %q) = %q, want %q", c.job, c.source, c.sender, got, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	k := Keys{Current: key1, Old: [][]byte{key2}}
	f.Add(Encode(typical, k))
	f.Add(Encode(Ref{}, k))
	f.Add(Encode(Ref{Rcpt: "x_y@z", Source: "2001:db8::1"}, k))
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, v string) {
		r, err := Decode(v, k)
		if err == nil && Encode(r, k) != strings.TrimSpace(v) {
			t.Errorf("accepted %q, which is not the canonical encoding of %+v", v, r)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add(typical.Rcpt, typical.JobID, typical.VMTA, typical.Source, typical.MsgID)
	f.Add("a_b@c", "", "", "::1", "")
	f.Fuzz(func(t *testing.T, rcpt, job, vmta, source, msgID string) {
		r := Ref{Rcpt: rcpt, JobID: job, VMTA: vmta, Source: source, MsgID: msgID}
		k := Keys{Current: key1}
		v := Encode(r, k)
		got, err := Decode(v, k)
		if len(v) > MaxLen {
			if !errors.Is(err, ErrForged) {
				t.Fatalf("over-long value: err = %v", err)
			}
			return
		}
		if err != nil || got != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, got, err)
		}
	})
}
