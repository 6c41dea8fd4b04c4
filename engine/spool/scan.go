package spool

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// Scan calls fn, in ID order, for every spooled message that still has a
// Pending recipient, with its envelope and all its recipients but no body.
// It is meant to run once at start-up: it rebuilds the bookkeeping Update
// relies on, and messages already known to the Store (Put since Open, or
// reported by an earlier Scan) are not reported again. Messages left with no
// Pending recipient are deleted. A corrupt message is logged and skipped
// (left on disk for inspection); only a storage error or an error from fn
// ends the Scan early, and that error is returned.
func (s *Store) Scan(fn func(m *Message) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()

	s.scanMu.Lock()
	if s.scanning {
		s.scanMu.Unlock()
		return fmt.Errorf("spool: scan already running")
	}
	s.scanning, s.gone = true, make(map[string]struct{})
	s.scanMu.Unlock()
	defer func() {
		s.scanMu.Lock()
		s.scanning, s.gone = false, nil
		s.scanMu.Unlock()
	}()

	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(metaPrefix),
		UpperBound: []byte("m0"), // '0' follows '/'
	})
	if err != nil {
		return fmt.Errorf("spool: scan: %w", err)
	}
	sc := scanner{s: s, fn: fn, del: s.db.NewBatch()}
	defer sc.del.Close()

	for ok := it.First(); ok && sc.err == nil; ok = it.Next() {
		sc.add(it.Key(), it.Value())
	}
	if sc.err == nil {
		sc.flush()
	}
	err = sc.err
	if ierr := it.Close(); err == nil && ierr != nil {
		err = fmt.Errorf("spool: scan: %w", ierr)
	}
	if !sc.del.Empty() {
		if derr := sc.del.Commit(pebble.Sync); derr != nil && err == nil {
			err = fmt.Errorf("spool: scan: delete finished messages: %w", derr)
		}
	}
	if err == nil {
		s.log.Info("spool scanned", zap.Int("recovered", sc.recovered),
			zap.Int("finished", sc.finished), zap.Int("corrupt", sc.corrupt))
	}
	return err
}

// scanner groups the metadata records of one message at a time.
type scanner struct {
	s   *Store
	fn  func(*Message) error
	del *pebble.Batch
	err error // from fn or the batch; ends the scan

	id     string // message being collected; "" before the first key
	env    *Envelope
	nrcpt  int
	rcpts  []Rcpt
	bad    error  // first corruption found in this message
	badKey []byte // a key that could not be parsed at all

	recovered, finished, corrupt int
}

func (sc *scanner) add(k, v []byte) {
	id, kind, idx, err := parseMetaKey(k)
	if err != nil && id == "" {
		// Cannot tell which message this belongs to.
		sc.flush()
		sc.corrupt++
		sc.s.log.Error("spool corrupt key skipped", zap.ByteString("key", k), zap.Error(err))
		return
	}
	if id != sc.id {
		sc.flush()
		sc.id = id
	}
	if sc.bad != nil {
		return
	}
	if err != nil {
		sc.bad = err
		return
	}
	v, err = sc.s.openValue(k, v)
	switch {
	case err != nil:
		sc.bad = err
	case kind == kindEnv:
		env, n, err := decodeEnvelope(v)
		if err != nil {
			sc.bad = fmt.Errorf("envelope: %w", err)
			return
		}
		sc.env, sc.nrcpt = &env, n
	case sc.env == nil:
		sc.bad = fmt.Errorf("recipient %d without envelope", idx)
	case idx != len(sc.rcpts) || idx >= sc.nrcpt:
		sc.bad = fmt.Errorf("recipient %d out of sequence (have %d of %d)", idx, len(sc.rcpts), sc.nrcpt)
	default:
		r, err := decodeRcpt(v)
		if err != nil {
			sc.bad = fmt.Errorf("recipient %d: %w", idx, err)
			return
		}
		sc.rcpts = append(sc.rcpts, r)
	}
}

// flush finishes the message being collected, if any.
func (sc *scanner) flush() {
	id, env, nrcpt, rcpts, bad := sc.id, sc.env, sc.nrcpt, sc.rcpts, sc.bad
	sc.id, sc.env, sc.nrcpt, sc.rcpts, sc.bad = "", nil, 0, nil, nil
	if id == "" {
		return
	}
	if bad == nil && env == nil {
		bad = fmt.Errorf("no envelope")
	}
	if bad == nil && len(rcpts) != nrcpt {
		bad = fmt.Errorf("%d of %d recipients", len(rcpts), nrcpt)
	}
	if bad != nil {
		sc.corrupt++
		sc.s.log.Error("spool corrupt message skipped", zap.String("msg_id", id), zap.Error(bad))
		return
	}
	if sc.s.known(id) {
		return
	}
	e := newEntry(rcpts)
	if countPending(e.pending) == 0 {
		sc.finished++
		if err := deleteMessage(sc.del, id, len(rcpts)); err != nil {
			sc.err = fmt.Errorf("spool: scan: %w", err)
		}
		return
	}
	if sc.s.isClosed() {
		sc.err = ErrClosed
		return
	}
	if !sc.s.track(id, e) {
		return // Put concurrently: owned by the live path
	}
	sc.recovered++
	if err := sc.fn(&Message{ID: id, Env: *env, Rcpts: rcpts}); err != nil {
		sc.err = err
	}
}

// known reports whether id is tracked, or was deleted while Scan runs.
func (s *Store) known(id string) bool {
	if s.lookup(id) != nil {
		return true
	}
	s.scanMu.Lock()
	_, gone := s.gone[id]
	s.scanMu.Unlock()
	return gone
}
