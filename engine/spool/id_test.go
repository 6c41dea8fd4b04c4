package spool

import (
	"testing"
	"time"
)

func TestNewID(t *testing.T) {
	var g idGen
	seen := map[string]bool{}
	prev := ""
	for range 10000 {
		id := g.next()
		if len(id) != idLen || !validID(id) {
			t.Fatalf("bad id %q", id)
		}
		if id <= prev || seen[id] {
			t.Fatalf("id %q not after %q", id, prev)
		}
		seen[id], prev = true, id
	}
}

func TestIDClock(t *testing.T) {
	clock := time.UnixMilli(1_700_000_000_000)
	g := idGen{now: func() time.Time { return clock }, rand: func(uint64) uint64 { return seqSpace - 2 }}
	a := g.next()
	b := g.next() // last sequence number of the millisecond
	c := g.next() // overflows into the next millisecond
	clock = clock.Add(-time.Hour)
	d := g.next() // clock stepped back: still increasing
	if !(a < b && b < c && c < d) {
		t.Errorf("ids not increasing: %s %s %s %s", a, b, c, d)
	}
	if a[:idHalf] != b[:idHalf] || b[:idHalf] == c[:idHalf] {
		t.Errorf("time part: %s %s %s", a, b, c)
	}
	// Two generators (two processes) in the same millisecond differ as long
	// as their random starts differ.
	clock = time.UnixMilli(1_700_000_000_000)
	g1 := idGen{now: func() time.Time { return clock }, rand: func(uint64) uint64 { return 5 }}
	g2 := idGen{now: func() time.Time { return clock }, rand: func(uint64) uint64 { return 6 }}
	if x, y := g1.next(), g2.next(); x == y || x[:idHalf] != y[:idHalf] {
		t.Errorf("%s vs %s", x, y)
	}
}

func TestPutBase62(t *testing.T) {
	cases := []struct {
		v    uint64
		want string
	}{
		{0, "000000000"},
		{61, "00000000z"},
		{62, "000000010"},
		{seqSpace - 1, "zzzzzzzzz"},
	}
	for _, c := range cases {
		b := make([]byte, idHalf)
		putBase62(b, c.v)
		if string(b) != c.want {
			t.Errorf("putBase62(%d) = %s, want %s", c.v, b, c.want)
		}
	}
}
