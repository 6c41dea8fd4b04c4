package spool

import (
	"fmt"
	"syscall"
)

// DefaultMinFree is the free space Put keeps in reserve on the spool's
// filesystem when Options.MinFreeBytes is 0.
const DefaultMinFree = 64 << 20

// ErrDiskFull is returned (wrapped) by Put when the spool's filesystem has
// less free space than the reserve; it also matches syscall.ENOSPC. The
// listener answers 452 4.3.1 (RFC 3463: mail system full).
var ErrDiskFull = fmt.Errorf("spool: not enough free space (%w)", syscall.ENOSPC)

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
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return nil // cannot tell: let the write decide
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if need := s.minFree + 2*int64(n); free < need {
		return fmt.Errorf("%w: %d bytes free, %d needed with the reserve", ErrDiskFull, free, need)
	}
	return nil
}
