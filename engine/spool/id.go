package spool

import (
	"math/rand/v2"
	"sync"
	"time"
)

// An ID is 18 base62 characters: 9 for the Unix time in milliseconds, 9 for
// a sequence number. The sequence starts at a random point each millisecond
// and counts up within it, so IDs from one Store are strictly increasing and
// two processes (or a restart after the clock stepped back) collide only if
// they pick overlapping ranges of 62^9/2 ≈ 2^52.6 in the same millisecond.
const (
	idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" // ASCII order: lexical order = numeric order
	idHalf     = 9
	idLen      = 2 * idHalf
	seqSpace   = 13537086546263552 // 62^9
)

// idGen hands out IDs; the zero value is ready to use.
type idGen struct {
	mu   sync.Mutex
	ms   int64
	seq  uint64
	now  func() time.Time // nil means time.Now
	rand func(n uint64) uint64
}

func (g *idGen) next() string {
	now := time.Now
	if g.now != nil {
		now = g.now
	}
	rnd := rand.Uint64N
	if g.rand != nil {
		rnd = g.rand
	}
	ms := now().UnixMilli()
	g.mu.Lock()
	switch {
	case ms > g.ms:
		g.ms, g.seq = ms, rnd(seqSpace/2) // leave room to count up
	default: // same millisecond, or the clock stepped back: stay monotonic
		g.seq++
		if g.seq >= seqSpace {
			g.ms, g.seq = g.ms+1, rnd(seqSpace/2)
		}
	}
	ms, seq := g.ms, g.seq
	g.mu.Unlock()

	var b [idLen]byte
	putBase62(b[:idHalf], uint64(max(ms, 0)))
	putBase62(b[idHalf:], seq)
	return string(b[:])
}

// putBase62 writes v into dst as fixed-width base62, most significant first.
func putBase62(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = idAlphabet[v%62]
		v /= 62
	}
}
