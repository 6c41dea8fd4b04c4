package spool

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Counters keep small named integers (warm-up counts) in the spool's
// database, under "c/<name>", apart from messages.
//
// An increment is written without its own fsync: it becomes durable with
// the next synced commit, which under traffic is milliseconds away (the WAL
// is sequential). A crash can lose only the last few increments.

func counterKey(name string) []byte { return []byte("c/" + name) }

// Counter returns the value of a counter; an unknown one is 0.
func (s *Store) Counter(name string) (int64, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	return s.counterLocked(name)
}

func (s *Store) counterLocked(name string) (int64, error) {
	v, closer, err := s.db.Get(counterKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool: counter %s: %w", name, err)
	}
	defer closer.Close()
	n, k := binary.Varint(v)
	if k <= 0 {
		return 0, fmt.Errorf("spool: counter %s: corrupt value", name)
	}
	return n, nil
}

// AddCounter adds delta to a counter and returns the new value.
func (s *Store) AddCounter(name string, delta int64) (int64, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	s.counterMu.Lock()
	defer s.counterMu.Unlock()
	n, err := s.counterLocked(name)
	if err != nil {
		return 0, err
	}
	n += delta
	buf := binary.AppendVarint(nil, n)
	if err := s.db.Set(counterKey(name), buf, pebble.NoSync); err != nil {
		return 0, fmt.Errorf("spool: counter %s: %w", name, err)
	}
	return n, nil
}
