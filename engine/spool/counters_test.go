package spool

import (
	"sync"
	"testing"

	"go.uber.org/zap"
)

func TestCountersSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 25; j++ {
				if _, err := s.AddCounter("warmup/v1/2026-11-28", 1); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n, _ := s.Counter("warmup/v1/2026-11-28"); n != 200 {
		t.Fatalf("counter = %d, want 200", n)
	}
	if n, _ := s.Counter("unknown"); n != 0 {
		t.Fatalf("unknown counter = %d", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _ := s.Counter("warmup/v1/2026-11-28"); n != 200 {
		t.Fatalf("after reopen counter = %d, want 200", n)
	}
	if n, _ := s.AddCounter("warmup/v1/2026-11-28", -50); n != 150 {
		t.Fatalf("after -50: %d", n)
	}
	var count int
	s.Scan(func(*Message) error { count++; return nil })
	if count != 0 {
		t.Fatalf("Scan saw %d messages among counters", count)
	}
}
