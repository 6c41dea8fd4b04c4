package spool

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// checkSpace trusts a recent statfs only far from the reserve.
func TestCheckSpaceAsksNearTheReserve(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	var calls int
	var free uint64
	s.statfs = func(_ string, st *syscall.Statfs_t) error {
		calls++
		st.Bsize, st.Bavail = 1, free
		return nil
	}
	free = 100 << 30 // far from the reserve: one statfs for many Puts
	for range 50 {
		must(t, s.checkSpace(10<<10), "checkSpace")
	}
	if calls != 1 {
		t.Fatalf("%d statfs calls for 50 Puts with 100 GiB free, want 1", calls)
	}
	s.space.at = time.Now().Add(-spaceRecheck) // stale: ask again
	must(t, s.checkSpace(10<<10), "checkSpace")
	if calls != 2 {
		t.Fatalf("%d statfs calls after the answer aged, want 2", calls)
	}

	s.space = spaceCache{}
	free = uint64(s.minFree) + 512<<20 // within the margin: every Put asks
	calls = 0
	for range 5 {
		must(t, s.checkSpace(10<<10), "checkSpace")
	}
	if calls != 5 {
		t.Fatalf("%d statfs calls for 5 Puts near the reserve, want 5", calls)
	}
	free = uint64(s.minFree) + 10<<10 // under the reserve plus twice the message
	if err := s.checkSpace(10 << 10); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("checkSpace near a full disk: %v, want ErrDiskFull", err)
	}
}
