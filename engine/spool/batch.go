package spool

import (
	"context"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// batchBytes bounds one pebble batch of PutBatch: large enough that an
// fsync covers many messages, small enough to stay an ordinary memtable
// write (pebble turns a batch over half the memtable into a flush of its
// own).
const batchBytes = 8 << 20

// batchCommits is how many of PutBatch's batches commit at once; pebble
// shares one WAL fsync among concurrent synced commits.
const batchCommits = 4

// PutBatch stores many messages as Put does, all or nothing: a nil error
// means every message, body and recipient is on stable storage; on an
// error none of them is kept. The messages go to disk in a few synced
// batches instead of one fsync each, which is what an HTTP injection of
// thousands of personalised messages needs. ms[i]'s body is bodies[i].
func (s *Store) PutBatch(ctx context.Context, ms []*Message, bodies [][]byte) error {
	if len(ms) != len(bodies) {
		return fmt.Errorf("spool: put batch: %d messages, %d bodies", len(ms), len(bodies))
	}
	entries := make([]*entry, len(ms))
	for i, m := range ms {
		if !validID(m.ID) {
			return fmt.Errorf("spool: put: invalid message id %q", m.ID)
		}
		if len(m.Rcpts) > maxRcpts {
			return fmt.Errorf("spool: put %s: %d recipients", m.ID, len(m.Rcpts))
		}
		for j := range m.Rcpts {
			if !m.Rcpts[j].State.valid() {
				return fmt.Errorf("spool: put %s: recipient %d: invalid state %d", m.ID, j, m.Rcpts[j].State)
			}
		}
		entries[i] = newEntry(m.Rcpts)
		if countPending(entries[i].pending) == 0 {
			return fmt.Errorf("spool: put %s: no pending recipient", m.ID)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool: put batch: %w", err)
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	// Track first, as Put does, so that a concurrent Scan skips them.
	for i, m := range ms {
		if !s.track(m.ID, entries[i]) {
			for _, t := range ms[:i] {
				s.untrack(t.ID)
			}
			return fmt.Errorf("spool: put %s: id already spooled", m.ID)
		}
	}

	// Cut the messages into batches of about batchBytes.
	var groups [][2]int
	start, size := 0, 0
	for i := range ms {
		size += len(bodies[i]) + 256*(1+len(ms[i].Rcpts))
		if size >= batchBytes || i == len(ms)-1 {
			groups = append(groups, [2]int{start, i + 1})
			start, size = i+1, 0
		}
	}
	committed := make([]bool, len(groups))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, batchCommits)
	)
	for g, r := range groups {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := s.commitGroup(ms[r[0]:r[1]], bodies[r[0]:r[1]])
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			committed[g] = err == nil
		}()
	}
	wg.Wait()
	if firstErr == nil {
		return nil
	}
	// All or nothing: remove what did commit. Nothing was enqueued yet, so
	// no delivery can be using these messages.
	b := s.db.NewBatch()
	defer b.Close()
	var derr error
	for g, r := range groups {
		for _, m := range ms[r[0]:r[1]] {
			if committed[g] && derr == nil {
				derr = deleteMessage(b, m.ID, len(m.Rcpts))
			}
			s.untrack(m.ID)
		}
	}
	if derr == nil {
		derr = b.Commit(pebble.Sync)
	}
	if derr != nil {
		s.log.Error("spool batch undo failed: its messages stay on disk and are recovered at the next start", zap.Error(derr))
	}
	return fmt.Errorf("spool: put batch of %d: %w", len(ms), firstErr)
}

// commitGroup writes ms in one synced pebble batch, sealed as Put seals
// them when the spool is encrypted.
func (s *Store) commitGroup(ms []*Message, bodies [][]byte) error {
	n := 0
	for i := range ms {
		n += len(bodies[i]) + 256*(1+len(ms[i].Rcpts))
	}
	b := s.db.NewBatchWithSize(n)
	defer b.Close()
	var err error
	scratch := getScratch() // packBody's, reused message after message
	defer putScratch(scratch)
	for i := 0; err == nil && i < len(ms); i++ {
		m := ms[i]
		bk, ek := bodyKey(m.ID), envKey(m.ID)
		err = b.Set(bk, s.sealValue(bk, packBody(bodies[i], scratch)), nil)
		if err == nil {
			err = b.Set(ek, s.sealValue(ek, encodeEnvelope(&m.Env, len(m.Rcpts))), nil)
		}
		for j := 0; err == nil && j < len(m.Rcpts); j++ {
			rk := rcptKey(m.ID, j)
			err = b.Set(rk, s.sealValue(rk, encodeRcpt(&m.Rcpts[j])), nil)
		}
	}
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	return err
}
