// Package spool stores accepted messages durably and yields the recipients
// still owed a delivery. A nil error from Put means body, envelope and every
// recipient are fsynced; the listener sends 250 only after that (RFC 5321
// §6.1). Bodies stay on disk. Nothing here knows about sessions or queues.
package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// State is the delivery state of one recipient.
type State uint8

// Recipient states. Delivered and Bounced are final.
const (
	Pending State = iota
	Delivered
	Bounced
)

// Final reports whether no further delivery is owed for the state.
func (s State) Final() bool { return s == Delivered || s == Bounced }

func (s State) valid() bool { return s <= Bounced }

// String returns "pending", "delivered" or "bounced".
func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Delivered:
		return "delivered"
	case Bounced:
		return "bounced"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Envelope is what MAIL FROM and the session said about a message.
type Envelope struct {
	From      string    // reverse-path, "" for the null sender
	EnvID     string    // RFC 3461 ENVID
	Ret       string    // "FULL", "HDRS" or ""
	SMTPUTF8  bool      // RFC 6531
	Body8Bit  bool      // BODY=8BITMIME (RFC 6152)
	Received  time.Time // when accepted (timeQueued)
	SourceIP  string    // injecting client's IP
	AuthUser  string
	JobID     string // from X-Job
	VMTA      string // requested VMTA or pool name ("" = default)
	BounceDSN bool   // send an RFC 3464 DSN on failure
	Size      int64  // body bytes
	// RequireTLS is RFC 8689 REQUIRETLS: relay only over TLS to an
	// authenticated MX host that itself offers REQUIRETLS.
	RequireTLS bool
}

// Rcpt is one recipient and its delivery state.
type Rcpt struct {
	Addr, ORcpt, Notify string // Notify is the RFC 3461 NOTIFY value, e.g. "FAILURE,DELAY" or ""
	State               State
	Attempts            int
	FirstAttempt        time.Time
	NextAttempt         time.Time
	LastReply           string // last remote reply text, for expiry bounces
}

// Message is a spooled message without its body.
type Message struct {
	ID    string
	Env   Envelope
	Rcpts []Rcpt
}

// Errors returned by the Store; test with errors.Is.
var (
	ErrNotFound = errors.New("spool: message not found")
	ErrClosed   = errors.New("spool: closed")
)

const nShards = 64

// Store is a pebble-backed spool. All methods are safe for concurrent use.
type Store struct {
	db  *pebble.DB
	log *zap.Logger
	ids idGen

	// Every operation registers in inflight; Close sets closed, waits for
	// them, and only then closes pebble, which must not be used after.
	closeMu  sync.Mutex
	closed   bool
	inflight sync.WaitGroup

	seed   maphash.Seed
	shards [nShards]shard
	count  atomic.Int64

	// While Scan runs, IDs deleted by Update are remembered so that Scan,
	// reading an older snapshot, does not bring them back.
	scanMu   sync.Mutex
	scanning bool
	gone     map[string]struct{}

	counterMu sync.Mutex // read-modify-write of counters (counters.go)

	cipher  *Cipher // nil: records are stored in clear (crypt.go)
	dir     string
	minFree int64                                 // space.go; negative: no check
	space   spaceCache                            // space.go
	statfs  func(string, *syscall.Statfs_t) error // syscall.Statfs; tests replace it
}

type shard struct {
	mu sync.Mutex
	m  map[string]*entry
}

// entry is the in-memory bookkeeping for one message: which recipients are
// still pending. Its mutex serialises Updates of the message.
type entry struct {
	mu      sync.Mutex
	n       int      // recipients
	pending []uint64 // bit i set: recipient i is Pending
	deleted bool     // removed from disk by an Update
}

func newEntry(rcpts []Rcpt) *entry {
	e := &entry{n: len(rcpts), pending: make([]uint64, (len(rcpts)+63)/64)}
	for i := range rcpts {
		if rcpts[i].State == Pending {
			e.pending[i/64] |= 1 << (i % 64)
		}
	}
	return e
}

func countPending(p []uint64) int {
	n := 0
	for _, w := range p {
		n += bits.OnesCount64(w)
	}
	return n
}

// Options are optional settings of OpenWith.
type Options struct {
	// Cipher, when set, seals every body, envelope and recipient record
	// with AES-256-GCM (crypt.go). A spool that holds sealed records cannot
	// be opened without one whose keys match.
	Cipher *Cipher
	// MinFreeBytes is the free space on the spool's filesystem below which
	// Put refuses new messages with ErrDiskFull [DefaultMinFree]; negative
	// disables the check.
	MinFreeBytes int64
}

// Open opens (creating if needed) the spool in dir. Every commit is synced,
// so the spool survives kill -9 and power loss up to the last nil Put.
func Open(dir string, log *zap.Logger) (*Store, error) {
	return OpenWith(dir, log, Options{})
}

// OpenWith is Open with options. A wrong or missing encryption key is an
// error wrapping ErrWrongKey or ErrEncrypted, found here rather than at the
// first message.
func OpenWith(dir string, log *zap.Logger, o Options) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	db, err := pebble.Open(dir, options(log))
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", dir, err)
	}
	if err := checkKeys(db, o.Cipher); err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, log: log, seed: maphash.MakeSeed(), cipher: o.Cipher, dir: dir, minFree: o.MinFreeBytes, statfs: syscall.Statfs}
	if s.minFree == 0 {
		s.minFree = DefaultMinFree
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*entry)
	}
	return s, nil
}

// options tunes pebble for a write-heavy spool whose keys mostly die young.
func options(log *zap.Logger) *pebble.Options {
	o := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		// A large memtable lets a message be written and deleted before it
		// is flushed: the flush then drops the body instead of writing it to
		// an sstable and compacting it later.
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
		// Every commit is synced already; these only smooth out writeback
		// of large bodies and of sstables.
		WALBytesPerSync: 1 << 20,
		BytesPerSync:    1 << 20,
		// L0 is compacted after 8 flushes rather than 4: the spool reads
		// little (a body per delivery), and mail that is delivered in the
		// meantime is dropped by the compaction instead of rewritten.
		L0CompactionThreshold: 8,
		L0StopWritesThreshold: 24,
		LBaseMaxBytes:         256 << 20,
		Logger:                pebbleLogger{log.Named("pebble").Sugar()},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { log.Error("pebble background error", zap.Error(err)) },
			DiskSlow: func(i pebble.DiskSlowInfo) {
				log.Warn("spool disk slow", zap.String("path", i.Path), zap.Duration("duration", i.Duration))
			},
			WriteStallBegin: func(i pebble.WriteStallBeginInfo) { log.Warn("spool write stall", zap.String("reason", i.Reason)) },
			WriteStallEnd:   func() { log.Info("spool write stall over") },
		},
	}
	// Bodies go to blob files when a memtable is flushed (value
	// separation); compactions then move keys and references, not the
	// bodies, which they would otherwise rewrite at each level while mail
	// waits in the spool. Envelopes and recipient records stay inline.
	// HTTP injection of 10 KB messages: 86 → 68 CPU µs per recipient
	// (engine/inject BenchmarkInjectHTTP).
	o.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           1024,
			MaxBlobReferenceDepth: 10,
			RewriteMinimumAge:     5 * time.Minute,
			TargetGarbageRatio:    0.2,
		}
	}
	return o
}

// pebbleLogger adapts zap to pebble.Logger.
type pebbleLogger struct{ l *zap.SugaredLogger }

func (p pebbleLogger) Infof(format string, args ...any)  { p.l.Infof(format, args...) }
func (p pebbleLogger) Errorf(format string, args ...any) { p.l.Errorf(format, args...) }

// Fatalf must not return: pebble calls it on broken invariants and would go
// on with a damaged store.
func (p pebbleLogger) Fatalf(format string, args ...any) { p.l.Fatalf(format, args...) }

// Close closes the store. It waits for operations in flight; operations
// started later, and a second Close, return ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.closeMu.Unlock()
	s.inflight.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}

// acquire registers an operation; it fails once Close has begun. Unlike a
// read lock it may be taken again by fn inside Scan while Close waits.
func (s *Store) acquire() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

func (s *Store) release() { s.inflight.Done() }

func (s *Store) isClosed() bool {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	return s.closed
}

// NewID returns a new message ID: 18 characters of [0-9A-Za-z] that sort in
// time order and are unique across restarts.
func (s *Store) NewID() string { return s.ids.next() }

// Len returns the number of messages with a pending recipient known to the
// Store: those Put since Open plus those returned by Scan.
func (s *Store) Len() int { return int(s.count.Load()) }

func (s *Store) shardOf(id string) *shard {
	return &s.shards[maphash.String(s.seed, id)%nShards]
}

func (s *Store) lookup(id string) *entry {
	sh := s.shardOf(id)
	sh.mu.Lock()
	e := sh.m[id]
	sh.mu.Unlock()
	return e
}

// track adds e unless id is known already; it reports whether it added it.
func (s *Store) track(id string, e *entry) bool {
	sh := s.shardOf(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[id]; ok {
		return false
	}
	sh.m[id] = e
	s.count.Add(1)
	return true
}

func (s *Store) untrack(id string) {
	sh := s.shardOf(id)
	sh.mu.Lock()
	if _, ok := sh.m[id]; ok {
		delete(sh.m, id)
		s.count.Add(-1)
	}
	sh.mu.Unlock()
	s.scanMu.Lock()
	if s.scanning {
		s.gone[id] = struct{}{}
	}
	s.scanMu.Unlock()
}

// Put stores the message and its body in one synced batch. A nil error means
// all of it is on stable storage; any error means the message must be
// refused with a temporary reply (451 4.3.0). m.ID must be [0-9A-Za-z]{1,64}
// (NewID makes one) and at least one recipient must be Pending.
func (s *Store) Put(ctx context.Context, m *Message, body []byte) error {
	if !validID(m.ID) {
		return fmt.Errorf("spool: put: invalid message id %q", m.ID)
	}
	if len(m.Rcpts) > maxRcpts {
		return fmt.Errorf("spool: put %s: %d recipients", m.ID, len(m.Rcpts))
	}
	e := newEntry(m.Rcpts)
	if countPending(e.pending) == 0 {
		return fmt.Errorf("spool: put %s: no pending recipient", m.ID)
	}
	for i := range m.Rcpts {
		if !m.Rcpts[i].State.valid() {
			return fmt.Errorf("spool: put %s: recipient %d: invalid state %d", m.ID, i, m.Rcpts[i].State)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool: put %s: %w", m.ID, err)
	}
	if err := s.checkSpace(len(body)); err != nil {
		return fmt.Errorf("spool: put %s: %w", m.ID, err)
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	// Track before committing, so that a Scan running meanwhile cannot
	// report the message as recovered as well.
	if !s.track(m.ID, e) {
		return fmt.Errorf("spool: put %s: id already spooled", m.ID)
	}

	b := s.db.NewBatchWithSize(len(body) + 256*(1+len(m.Rcpts)))
	defer b.Close()
	// Batch.Set copies key and value into the batch and fails only on
	// a closed or read-only batch; the commit reports the rest.
	bk, ek := bodyKey(m.ID), envKey(m.ID)
	scratch := getScratch() // Set copies the value before it is reused
	defer putScratch(scratch)
	err := b.Set(bk, s.sealValue(bk, packBody(body, scratch)), nil)
	if err == nil {
		err = b.Set(ek, s.sealValue(ek, encodeEnvelope(&m.Env, len(m.Rcpts))), nil)
	}
	for i := 0; err == nil && i < len(m.Rcpts); i++ {
		rk := rcptKey(m.ID, i)
		err = b.Set(rk, s.sealValue(rk, encodeRcpt(&m.Rcpts[i])), nil)
	}
	if err == nil {
		// Concurrent synced commits share one WAL fsync (group commit).
		err = b.Commit(pebble.Sync)
	}
	if err != nil {
		s.untrack(m.ID)
		return fmt.Errorf("spool: put %s: %w", m.ID, err)
	}
	return nil
}

// Body returns the body of message id, or an error wrapping ErrNotFound.
func (s *Store) Body(id string) ([]byte, error) {
	if !validID(id) {
		return nil, fmt.Errorf("spool: body %q: %w", id, ErrNotFound)
	}
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	bk := bodyKey(id)
	v, closer, err := s.db.Get(bk)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("spool: body %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: body %s: %w", id, err)
	}
	var out []byte
	if s.cipher != nil && sealed(v) {
		out, err = s.cipher.open(bk, v) // a new slice: v is only valid until closer.Close
		if err == nil {
			out, err = unpackBody(out)
		}
	} else if s.cipher == nil && sealed(v) {
		err = ErrEncrypted
	} else if bytes.HasPrefix(v, []byte(packMagic)) {
		out, err = unpackBody(v) // a new slice
	} else {
		out = make([]byte, len(v))
		copy(out, v)
	}
	if cerr := closer.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("spool: body %s: %w", id, err)
	}
	return out, nil
}

// Update persists new states of some recipients of message id in one batch:
// rcpts[k] is the new state of recipient idx[k]. The batch goes to the WAL
// without an fsync of its own: it survives a process crash once pebble's
// log writer has flushed it (at once, in the background), and becomes
// durable against power loss with the next synced commit (the next Put).
// What a power loss can undo is a delivered mark, so the worst case is a
// duplicate, never a loss; and delivery no longer costs an fsync. When no recipient
// remains Pending, the whole message (body, envelope, recipients) is deleted
// in that same batch instead. Call it after the remote's 250, so a crash
// costs at worst a duplicate. The message must be known to the Store (Put
// since Open, or returned by Scan); otherwise the error wraps ErrNotFound.
func (s *Store) Update(id string, idx []int, rcpts []Rcpt) error {
	if len(idx) != len(rcpts) {
		return fmt.Errorf("spool: update %s: %d indexes for %d recipients", id, len(idx), len(rcpts))
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	e := s.lookup(id)
	if e == nil {
		return fmt.Errorf("spool: update %s: %w", id, ErrNotFound)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.deleted {
		return fmt.Errorf("spool: update %s: %w", id, ErrNotFound)
	}
	next := append([]uint64(nil), e.pending...)
	for k, i := range idx {
		if i < 0 || i >= e.n {
			return fmt.Errorf("spool: update %s: recipient index %d out of range [0,%d)", id, i, e.n)
		}
		if !rcpts[k].State.valid() {
			return fmt.Errorf("spool: update %s: recipient %d: invalid state %d", id, i, rcpts[k].State)
		}
		if rcpts[k].State == Pending {
			next[i/64] |= 1 << (i % 64)
		} else {
			next[i/64] &^= 1 << (i % 64)
		}
	}
	done := countPending(next) == 0

	b := s.db.NewBatch()
	defer b.Close()
	var err error
	if done {
		err = deleteMessage(b, id, e.n)
	} else {
		for k := 0; err == nil && k < len(idx); k++ {
			rk := rcptKey(id, idx[k])
			err = b.Set(rk, s.sealValue(rk, encodeRcpt(&rcpts[k])), nil)
		}
	}
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	if err != nil {
		return fmt.Errorf("spool: update %s: %w", id, err)
	}
	e.pending = next
	if done {
		e.deleted = true
		s.untrack(id)
	}
	return nil
}

// deleteMessage adds the deletion of every key of a message to b.
func deleteMessage(b *pebble.Batch, id string, nrcpt int) error {
	err := b.Delete(bodyKey(id), nil)
	if err == nil {
		err = b.Delete(envKey(id), nil)
	}
	for i := 0; err == nil && i < nrcpt; i++ {
		err = b.Delete(rcptKey(id, i), nil)
	}
	return err
}
