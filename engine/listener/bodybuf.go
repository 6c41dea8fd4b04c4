package listener

import (
	"bytes"
	"sync"
)

// readBufs recycles the buffers that DATA is read into. Nothing keeps a
// reference to one after Data returns: the header is copied out of it and
// the message handed to the spool is a new buffer.
var readBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuf keeps a rare large message's buffer from staying in memory.
const maxPooledBuf = 1 << 20

// getReadBuf returns an empty buffer with room for hint bytes.
func getReadBuf(hint int64) *bytes.Buffer {
	b := readBufs.Get().(*bytes.Buffer)
	b.Reset()
	b.Grow(int(hint))
	return b
}

func putReadBuf(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuf {
		readBufs.Put(b)
	}
}

// bodyClean is checkBody's fast path for the common, valid message: a few
// whole-buffer scans (vectorised by the runtime) rather than a byte loop.
// It reports true only if checkBody would find nothing; otherwise checkBody
// runs its exact loop to name the first fault.
func bodyClean(b []byte) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	lines := 0
	for rest := b; ; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if len(rest) > maxLineLength {
				return false
			}
			break
		}
		if i == 0 || rest[i-1] != '\r' || i-1 > maxLineLength {
			return false
		}
		lines++
		rest = rest[i+1:]
	}
	// Every LF follows a CR; as many CRs as LFs means no bare CR.
	return bytes.Count(b, []byte{'\r'}) == lines
}
