package spool

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/golang/snappy"
)

// A body is stored compressed when that saves at least an eighth of it:
//
//	magic "\x00SZ" | snappy block
//
// Campaign HTML shrinks to about a third and plain prose to about 60 %,
// so the spool writes (WAL, then blob files at flush) that much less;
// attachments that are already compressed stay as they are. A body never starts with NUL (the
// listener refuses NUL), so a stored value without the magic is a body as
// received, as every body was before compression existed. Compression
// comes before sealing (crypt.go): a sealed body holds a compressed one.
const packMagic = "\x00SZ"

// minPack is the smallest body worth compressing.
const minPack = 1024

// maxUnpacked bounds the size a compressed body may claim: far above any
// message the listener or the HTTP API accepts.
const maxUnpacked = 1 << 30

// packBody returns the stored form of body. The result may be body
// itself, or *scratch's memory, reused at the next call with the same
// scratch: the caller copies it (pebble's Batch.Set does) before then.
func packBody(body []byte, scratch *[]byte) []byte {
	if len(body) < minPack {
		return body
	}
	need := len(packMagic) + snappy.MaxEncodedLen(len(body))
	if cap(*scratch) < need {
		*scratch = make([]byte, need)
	}
	out := (*scratch)[:need]
	copy(out, packMagic)
	enc := snappy.Encode(out[len(packMagic):], body)
	if n := len(packMagic) + len(enc); n <= len(body)-len(body)/8 {
		return out[:n]
	}
	return body
}

// scratchPool holds packBody's scratch buffers between Puts; buffers of
// large bodies are not kept.
var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledScratch is the largest scratch buffer put back in the pool.
const maxPooledScratch = 256 << 10

func getScratch() *[]byte { return scratchPool.Get().(*[]byte) }

func putScratch(b *[]byte) {
	if cap(*b) <= maxPooledScratch {
		scratchPool.Put(b)
	}
}

// errBadPack reports a compressed body that does not decode: damage on
// disk, which the caller reports like any unreadable record.
var errBadPack = errors.New("spool: compressed body does not decode")

// unpackBody is the inverse of packBody. The result never aliases v when v
// was compressed; otherwise it is v.
func unpackBody(v []byte) ([]byte, error) {
	if !bytes.HasPrefix(v, []byte(packMagic)) {
		return v, nil
	}
	// The length is checked before Decode allocates it: a damaged header
	// must be an error, not a multi-gigabyte allocation.
	n, err := snappy.DecodedLen(v[len(packMagic):])
	if err == nil && n > maxUnpacked {
		err = fmt.Errorf("claims %d bytes", n)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadPack, err)
	}
	out, err := snappy.Decode(make([]byte, n), v[len(packMagic):])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadPack, err)
	}
	return out, nil
}
