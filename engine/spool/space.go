package spool

import (
	"fmt"
	"sync"
	"syscall"
	"time"
)

// DefaultMinFree is the free space Put keeps in reserve on the spool's
// filesystem when Options.MinFreeBytes is 0.
const DefaultMinFree = 64 << 20

// ErrDiskFull is returned (wrapped) by Put when the spool's filesystem has
// less free space than the reserve; it also matches syscall.ENOSPC. The
// listener answers 452 4.3.1 (RFC 3463: mail system full).
var ErrDiskFull = fmt.Errorf("spool: not enough free space (%w)", syscall.ENOSPC)

// A Put trusts the last statfs instead of asking again (statfs cost
// 15 µs, a tenth of the spool's CPU per message) while the answer is
// younger than spaceRecheck and the filesystem had more than spaceMargin
// to spare beyond the reserve and what was put since. Another process
// would have to write spaceMargin within spaceRecheck to get past it;
// close to the reserve every Put asks.
const (
	spaceRecheck = 250 * time.Millisecond
	spaceMargin  = 1 << 30
)

// spaceCache is the last statfs answer.
type spaceCache struct {
	mu   sync.Mutex
	at   time.Time
	free int64 // bytes free then
	put  int64 // bytes put since
}

// checkSpace refuses a Put of n bytes that would eat into the reserve.
//
// Why before the write: pebble treats a failed WAL write as fatal and stops
// the process ("fatal commit error"), so a full disk must never reach it.
// The reserve leaves room for what pebble writes besides Puts (recipient
// updates and deletions, flushes, compactions), and those free space again.
func (s *Store) checkSpace(n int) error {
	if s.minFree < 0 {
		return nil
	}
	need := s.minFree + 2*int64(n)
	c := &s.space
	c.mu.Lock()
	if !c.at.IsZero() && time.Since(c.at) < spaceRecheck && c.free-c.put-need > spaceMargin {
		c.put += int64(n)
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	var st syscall.Statfs_t
	if err := s.statfs(s.dir, &st); err != nil {
		return nil // cannot tell: let the write decide
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	c.mu.Lock()
	c.at, c.free, c.put = time.Now(), free, int64(n)
	c.mu.Unlock()
	if free < need {
		return fmt.Errorf("%w: %d bytes free, %d needed with the reserve", ErrDiskFull, free, need)
	}
	return nil
}
