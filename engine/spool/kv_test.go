package spool

import (
	"context"
	"errors"
	"testing"
)

func TestKV(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	kv := s.KV()
	if v, err := kv.Get("absent"); v != nil || err != nil {
		t.Fatalf("Get(absent) = %q, %v", v, err)
	}
	for _, k := range []string{"suppress/\x00a@x.test", "suppress/\x00b@x.test", "suppress/t1\x00c@x.test", "other/k", "suppresz"} {
		if err := kv.Set(k, []byte("v:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := kv.Delete("suppress/\x00b@x.test"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete("never-set"); err != nil {
		t.Fatalf("Delete(absent): %v", err)
	}
	// Messages and KV keys do not see each other.
	m := &Message{ID: s.NewID(), Env: Envelope{From: "a@x.test"}, Rcpts: []Rcpt{{Addr: "b@y.test"}}}
	if err := s.Put(context.Background(), m, []byte("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kv = s.KV()
	var keys []string
	err = kv.Scan("suppress/", func(k string, v []byte) error {
		if string(v) != "v:"+k {
			t.Errorf("value of %q = %q", k, v)
		}
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != "suppress/\x00a@x.test" || keys[1] != "suppress/t1\x00c@x.test" {
		t.Errorf("Scan(suppress/) after reopen = %q", keys)
	}
	stop := errors.New("stop")
	if err := kv.Scan("", func(string, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Scan did not return fn's error: %v", err)
	}
	n := 0
	if err := s.Scan(func(*Message) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("message Scan saw %d messages (%v), want 1", n, err)
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, c := range []struct{ in, want string }{{"k/a", "k/b"}, {"k/\xff", "k0"}, {"\xff\xff", ""}} {
		if got := string(prefixEnd([]byte(c.in))); got != c.want {
			t.Errorf("prefixEnd(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
