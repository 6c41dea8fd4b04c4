package spool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestScanCorrupt damages records in several ways; Scan must log and skip
// each damaged message, return the intact ones, and not fail.
func TestScanCorrupt(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	ids := []string{"ok1", "badenv", "badrcpt", "missing", "extra", "ok2", "noenv"}
	for _, id := range ids[:6] {
		must(t, s.Put(ctx, sample(id, 2), nil), "Put")
	}
	// Write the damage straight into pebble.
	set := func(k, v []byte) { must(t, s.db.Set(k, v, pebble.Sync), "Set") }
	set(envKey("badenv"), []byte{envVersion1, 0, 0xff})                // truncated varint
	set(rcptKey("badrcpt", 1), []byte{9, 0})                           // unknown version
	must(t, s.db.Delete(rcptKey("missing", 1), pebble.Sync), "Delete") // a gap
	set(rcptKey("extra", 2), encodeRcpt(&Rcpt{Addr: "x@y.test"}))      // more than the count
	set(rcptKey("noenv", 0), encodeRcpt(&Rcpt{Addr: "x@y.test"}))      // orphan recipient
	set([]byte("m/weird"), []byte("x"))                                // unparsable key
	set([]byte("m/ok2/z"), nil)                                        // unknown record kind
	must(t, s.Close(), "Close")

	core, logs := observer.New(zapcore.ErrorLevel)
	s, err := Open(dir, zap.New(core))
	must(t, err, "Open")
	defer s.Close()
	got, _ := scanAll(t, s)
	if len(got) != 1 || got["ok1"] == nil {
		t.Errorf("Scan returned %v, want only ok1", keys(got))
	}
	skipped := map[string]bool{}
	for _, e := range logs.FilterMessage("spool corrupt message skipped").All() {
		skipped[e.ContextMap()["msg_id"].(string)] = true
	}
	for _, id := range ids[1:] {
		if !skipped[id] {
			t.Errorf("no error logged for corrupt message %s", id)
		}
	}
	if n := logs.FilterMessage("spool corrupt key skipped").Len(); n != 1 {
		t.Errorf("%d corrupt-key logs, want 1", n)
	}
	// Corrupt messages stay on disk for an operator to look at.
	if _, err := s.Body("badenv"); err != nil {
		t.Errorf("Body of skipped message: %v", err)
	}
}

// TestScanDeletesFinished: a message whose recipients are all final (which
// Update never leaves behind, but an older version or a tool might) is
// deleted by Scan and not reported.
func TestScanDeletesFinished(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	b := s.db.NewBatch()
	must(t, b.Set(bodyKey("done"), []byte("body"), nil), "Set")
	must(t, b.Set(envKey("done"), encodeEnvelope(&Envelope{}, 2), nil), "Set")
	must(t, b.Set(rcptKey("done", 0), encodeRcpt(&Rcpt{State: Delivered}), nil), "Set")
	must(t, b.Set(rcptKey("done", 1), encodeRcpt(&Rcpt{State: Bounced}), nil), "Set")
	must(t, b.Commit(pebble.Sync), "Commit")
	must(t, b.Close(), "batch Close")
	must(t, s.Put(context.Background(), sample("live", 1), nil), "Put")
	must(t, s.Close(), "Close")

	s = open(t, dir)
	got, _ := scanAll(t, s)
	if len(got) != 1 || got["live"] == nil {
		t.Errorf("Scan returned %v, want only live", keys(got))
	}
	if _, err := s.Body("done"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Body(done) after Scan: %v, want ErrNotFound", err)
	}
	must(t, s.Close(), "Close")
	s = open(t, dir)
	defer s.Close()
	if _, closer, err := s.db.Get(envKey("done")); !errors.Is(err, pebble.ErrNotFound) {
		t.Errorf("envelope of finished message survived reopen: %v", err)
		if err == nil {
			closer.Close()
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	m := sample("x", 1)
	for _, e := range []Envelope{m.Env, {}, {Received: time.Unix(-5, 7), Size: -1}} {
		p := encodeEnvelope(&e, 3)
		got, n, err := decodeEnvelope(p)
		must(t, err, "decodeEnvelope")
		if n != 3 || !got.Received.Equal(e.Received) || got.Received.IsZero() != e.Received.IsZero() {
			t.Errorf("envelope %+v: got %+v, n=%d", e, got, n)
		}
		got.Received, e.Received = time.Time{}, time.Time{}
		if got != e {
			t.Errorf("envelope: got %+v, want %+v", got, e)
		}
	}
	for _, r := range []Rcpt{m.Rcpts[0], {}, {State: Bounced, Attempts: 99, LastReply: "550 5.1.1 no"}} {
		got, err := decodeRcpt(encodeRcpt(&r))
		must(t, err, "decodeRcpt")
		if !got.NextAttempt.Equal(r.NextAttempt) || !got.FirstAttempt.Equal(r.FirstAttempt) {
			t.Errorf("rcpt times: got %+v, want %+v", got, r)
		}
		got.NextAttempt, got.FirstAttempt, r.NextAttempt, r.FirstAttempt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if got != r {
			t.Errorf("rcpt: got %+v, want %+v", got, r)
		}
	}
}

func TestDecodeCorrupt(t *testing.T) {
	env := encodeEnvelope(&sample("x", 1).Env, 1)
	rcpt := encodeRcpt(&sample("x", 1).Rcpts[0])
	cases := []struct {
		name string
		p    []byte
		rcpt bool
	}{
		{"empty envelope", nil, false},
		{"envelope version", append([]byte{2}, env[1:]...), false},
		{"envelope flags", append([]byte{1, 0x80}, env[2:]...), false},
		{"envelope truncated", env[:len(env)-1], false},
		{"envelope trailing", append(env[:len(env):len(env)], 0), false},
		{"envelope huge string", []byte{1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}, false},
		{"envelope huge count", []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, false},
		{"envelope bad time marker", []byte{1, 0, 1, 0, 0, 0, 7}, false},
		{"empty rcpt", nil, true},
		{"rcpt version", append([]byte{0}, rcpt[1:]...), true},
		{"rcpt state", append([]byte{1, 3}, rcpt[2:]...), true},
		{"rcpt truncated", rcpt[:len(rcpt)-1], true},
		{"rcpt bad nanos", []byte{1, 0, 0, 0, 0, 0, 1, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03}, true},
	}
	for _, c := range cases {
		var err error
		if c.rcpt {
			_, err = decodeRcpt(c.p)
		} else {
			_, _, err = decodeEnvelope(c.p)
		}
		if !errors.Is(err, errCorrupt) {
			t.Errorf("%s: err = %v, want errCorrupt", c.name, err)
		}
	}
}

func TestParseMetaKey(t *testing.T) {
	cases := []struct {
		key  string
		id   string
		kind metaKind
		idx  int
		ok   bool
	}{
		{"m/abc/e", "abc", kindEnv, 0, true},
		{string(rcptKey("abc", 258)), "abc", kindRcpt, 258, true},
		{"m/abc/r/\x00\x00", "abc", 0, 0, false},
		{"m/abc/x", "abc", 0, 0, false},
		{"m/abc", "", 0, 0, false},
		{"m//e", "", 0, 0, false},
		{"m/a-b/e", "", 0, 0, false},
		{"b/abc", "", 0, 0, false},
		{string(rcptKey("abc", maxRcpts)), "abc", 0, 0, false},
	}
	for _, c := range cases {
		id, kind, idx, err := parseMetaKey([]byte(c.key))
		if (err == nil) != c.ok || id != c.id || kind != c.kind || idx != c.idx {
			t.Errorf("parseMetaKey(%q) = %q, %d, %d, %v", c.key, id, kind, idx, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encodeEnvelope(&sample("x", 1).Env, 1))
	f.Add(encodeRcpt(&sample("x", 1).Rcpts[0]))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		// Any input: an error or a value, never a panic. A value must
		// survive a second round trip.
		if e, n, err := decodeEnvelope(p); err == nil {
			if _, _, err := decodeEnvelope(encodeEnvelope(&e, n)); err != nil {
				t.Errorf("re-encoded envelope does not decode: %v", err)
			}
		}
		if r, err := decodeRcpt(p); err == nil {
			if _, err := decodeRcpt(encodeRcpt(&r)); err != nil {
				t.Errorf("re-encoded rcpt does not decode: %v", err)
			}
		}
	})
}
