package acct

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

const (
	// flushThreshold is the buffered size at which Write hands the buffer to
	// the file itself instead of waiting for the next flush tick.
	flushThreshold = 64 << 10
	// maxBuffer bounds memory while the file cannot be written: beyond it the
	// buffered records are dropped (and counted in the log).
	maxBuffer = 16 << 20
	// syncInterval is the least time between two fsyncs by Run.
	syncInterval = 5 * time.Second
	// dayLayout names the files: acct-2026-11-28.csv.
	dayLayout = "2006-01-02"
)

// Options configures a Writer.
type Options struct {
	Dir           string           // directory of the acct-YYYY-MM-DD.csv files; created if missing
	Records       []string         // record types written (e.g. "d", "b", "t", "r"); empty means all
	Now           func() time.Time // clock for records without TimeLogged and for the first file; default time.Now
	FlushInterval time.Duration    // how often Run writes the buffer to the file; default 1s

	// Rotation and retention ([acct-file]; see rotate.go). Zero disables each.
	MaxSize      int64         // move the day's file aside once it reaches this many bytes
	MoveInterval time.Duration // also move it aside every interval, aligned to UTC
	DeleteAfter  time.Duration // Run deletes acct files not written to for this long

	// HeaderFields names the header_* columns ([acct] header-fields): one
	// column header_N per name N, after vmtaPool, holding Record.Headers[N].
	// Names must be RFC 5322 field names (ValidFieldName), distinct in any
	// case. When the day's file was started with other columns (the list
	// changed across a restart), Open moves it aside as rotation does and
	// starts a new one, so that every file matches its own header row.
	HeaderFields []string
}

// Writer appends records to the day's accounting file. Write is safe for
// concurrent use and only touches memory, except when its buffer passes
// 64 KiB or the day changes; Run flushes the buffer every FlushInterval.
type Writer struct {
	dir      string
	keep     map[string]bool // nil: every type
	now      func() time.Time
	interval time.Duration
	log      *zap.Logger
	encoders sync.Pool // of *encoder

	headers   []string // Options.HeaderFields
	header    []byte   // the header row, CSV-encoded with its line break
	headerLen int      // len(header)

	maxSize      int64
	moveInterval time.Duration
	deleteAfter  time.Duration

	mu       sync.Mutex
	f        *os.File  // nil after Close, or while the day's file cannot be opened
	day      string    // the UTC day of f, "2006-01-02"
	size     int64     // bytes in f, header included
	records  bool      // f holds records written since it was opened (not only its header)
	nextMove time.Time // when MoveInterval next moves f aside; zero: never
	buf      []byte    // whole CSV lines not yet written to f
	dirty    bool      // written to f since the last fsync
	failing  bool      // the last write failed (logged once per failure spell)
	closed   bool
	// warnedClosed is set once a Write after Close has been logged.
	warnedClosed bool

	observers atomic.Pointer[[]func(*Record)] // copy-on-write; see Observe
}

// Observe registers fn to see every record passed to Write, whatever
// Options.Records keeps, before the record is written (metrics, job
// counters, event webhooks). fn runs on the writer's caller goroutine and
// must be quick and must not keep or modify the record.
func (w *Writer) Observe(fn func(*Record)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var next []func(*Record)
	if cur := w.observers.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, fn)
	w.observers.Store(&next)
}

// encoder turns one Record into one CSV line without holding the Writer's
// lock.
type encoder struct {
	buf  bytes.Buffer
	cw   *csv.Writer
	row  [numFields]string
	line []string // row with the header_* columns, when configured
}

// Open creates the directory if needed and opens (or creates, with its
// header row) the file of the current UTC day, so that a directory we cannot
// write to is reported at startup. A file that exists is appended to.
func Open(o Options, log *zap.Logger) (*Writer, error) {
	if o.Dir == "" {
		return nil, errors.New("acct: no log directory")
	}
	if log == nil {
		log = zap.NewNop()
	}
	w := &Writer{dir: o.Dir, now: o.Now, interval: o.FlushInterval, log: log,
		maxSize: o.MaxSize, moveInterval: o.MoveInterval, deleteAfter: o.DeleteAfter}
	if w.now == nil {
		w.now = time.Now
	}
	if w.interval <= 0 {
		w.interval = time.Second
	}
	for _, t := range o.Records {
		if t = strings.ToLower(strings.TrimSpace(t)); t != "" {
			if w.keep == nil {
				w.keep = map[string]bool{}
			}
			w.keep[t] = true
		}
	}
	for i, n := range o.HeaderFields {
		if !ValidFieldName(n) {
			return nil, fmt.Errorf("acct: header field %q is not a field name", n)
		}
		for _, m := range o.HeaderFields[:i] {
			if strings.EqualFold(m, n) {
				return nil, fmt.Errorf("acct: header field %q is listed twice", n)
			}
		}
	}
	w.headers = append([]string(nil), o.HeaderFields...)
	var hb bytes.Buffer
	hw := csv.NewWriter(&hb)
	hw.Write(headerRow(w.headers))
	hw.Flush()
	w.header, w.headerLen = hb.Bytes(), hb.Len()
	w.encoders.New = func() any {
		e := &encoder{}
		e.cw = csv.NewWriter(&e.buf)
		return e
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("acct: %w", err)
	}
	now := w.now()
	w.day = now.UTC().Format(dayLayout)
	if err := w.reopenLocked(); err != nil {
		return nil, err
	}
	w.scheduleMove(now)
	return w, nil
}

// Path returns the file name used for the UTC day of t.
func Path(dir string, t time.Time) string {
	return filepath.Join(dir, "acct-"+t.UTC().Format(dayLayout)+".csv")
}

// HeaderFields returns the configured header_* field names, in column
// order (Options.HeaderFields): what producers of records pass to
// HeaderValues. The slice must not be modified.
func (w *Writer) HeaderFields() []string { return w.headers }

// openDay opens the current day's file for appending. A new or empty file
// gets the header row; a file whose last line was cut short (a crash in the
// middle of a write) gets a line break first, so the next record starts a
// line. A file that starts with another header row (header-fields changed
// since it was written) is moved aside and a new one started.
func (w *Writer) openDay() (*os.File, error) {
	name := filepath.Join(w.dir, "acct-"+w.day+".csv")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("acct: %w", err)
	}
	var prefix []byte
	st, err := f.Stat()
	if err == nil && st.Size() > 0 {
		var moved bool
		if moved, err = w.checkHeader(f, name, st.Size()); err == nil && moved {
			return w.openDay() // the file is gone: this opens a new one
		}
		if err == nil {
			st, err = f.Stat() // checkHeader may have emptied a cut-short header
		}
	}
	if err == nil {
		if st.Size() == 0 {
			prefix = w.header
		} else {
			last := make([]byte, 1)
			if _, err = f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
				prefix = []byte("\n")
			}
		}
	}
	if err == nil && prefix != nil {
		_, err = f.Write(prefix)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("acct: %s: %w", name, err)
	}
	return f, nil
}

// Write queues r for the file of the UTC day of r.TimeLogged (the Writer's
// clock when unset). Records of types not selected by Options.Records are
// dropped. A record of a day before the current file's (one logged just
// before midnight that arrives just after) goes to the current file: files
// only move forward. Write never returns an error; write failures are logged
// and returned by Flush.
func (w *Writer) Write(r *Record) {
	if r == nil {
		return
	}
	if r.TimeLogged.IsZero() {
		c := *r
		c.TimeLogged = w.now()
		r = &c
	}
	if obs := w.observers.Load(); obs != nil {
		for _, fn := range *obs {
			fn(r)
		}
	}
	if w.keep != nil && !w.keep[r.Type] {
		return
	}
	e := w.encoders.Get().(*encoder)
	defer w.encoders.Put(e)
	e.buf.Reset()
	r.row(&e.row)
	line := e.row[:]
	if len(w.headers) > 0 {
		e.line = append(e.line[:0], e.row[:vmtaPoolCol+1]...)
		for _, n := range w.headers {
			v := r.header(n)
			if strings.ContainsAny(v, "\r\n") {
				v = oneLine(v)
			}
			e.line = append(e.line, clip(v))
		}
		line = append(e.line, e.row[vmtaPoolCol+1:]...)
		e.line = line
	}
	e.cw.Write(line) // errors only from the underlying bytes.Buffer: none
	e.cw.Flush()
	day := r.TimeLogged.UTC().Format(dayLayout)

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		if !w.warnedClosed { // a shutdown-order bug: say so once
			w.warnedClosed = true
			w.log.Warn("acct record written after close dropped", zap.String("type", r.Type))
		}
		return
	}
	if day > w.day {
		w.rotateLocked(day)
	}
	w.buf = append(w.buf, e.buf.Bytes()...)
	if len(w.buf) >= flushThreshold {
		w.writeLocked()
	}
}

// rotateLocked writes what is buffered to the old file, closes it and opens
// the file of day. If the old file could not take its last records, they
// stay buffered and go to the new one: misfiled by a day beats lost.
func (w *Writer) rotateLocked(day string) {
	w.writeLocked()
	if w.f != nil {
		if err := errors.Join(w.f.Sync(), w.f.Close()); err != nil {
			w.log.Error("acct file close failed", zap.String("day", w.day), zap.Error(err))
		}
		w.f, w.dirty = nil, false
	}
	w.day = day
	if err := w.reopenLocked(); err != nil {
		w.log.Error("acct file open failed", zap.String("day", day), zap.Error(err))
	}
}

// checkHeader compares the first line of f, of size bytes, with our header
// row. A file holding only a cut-short header row (a crash while it was
// written) is emptied; one with another header row is closed and moved
// aside (reported true).
func (w *Writer) checkHeader(f *os.File, name string, size int64) (moved bool, err error) {
	have := make([]byte, min(size, int64(w.headerLen)))
	if _, err := f.ReadAt(have, 0); err != nil {
		return false, err
	}
	switch {
	case bytes.Equal(have, w.header):
		return false, nil
	case size < int64(w.headerLen) && bytes.HasPrefix(w.header, have):
		if err := f.Truncate(0); err != nil {
			return false, err
		}
		return false, nil
	}
	f.Close()
	to := w.movedName(w.now())
	if err := os.Rename(name, to); err != nil {
		return false, fmt.Errorf("other columns than header-fields asks, and cannot move it aside: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		w.log.Warn("acct directory fsync failed", zap.Error(err))
	}
	w.log.Warn("acct file has other columns (header-fields changed): moved aside", zap.String("file", to))
	return true, nil
}

// reopenLocked opens the current day's file after a rotation or a failure.
func (w *Writer) reopenLocked() error {
	f, err := w.openDay()
	if err != nil {
		return err
	}
	w.f, w.records = f, false
	w.size = 0
	if st, err := f.Stat(); err == nil {
		w.size = st.Size()
		w.records = st.Size() > int64(w.headerLen) // appending to a file that has records
	}
	return nil
}

// writeLocked hands the buffer to the file.
func (w *Writer) writeLocked() error {
	if len(w.buf) == 0 {
		return nil
	}
	var err error
	switch {
	case w.f == nil && w.closed:
		return errors.New("acct: writer closed")
	case w.f == nil:
		err = w.reopenLocked()
	}
	if err == nil {
		var n int
		n, err = w.f.Write(w.buf)
		if n > 0 {
			w.dirty, w.records = true, true
			w.size += int64(n)
		}
		// A short write leaves the rest of a line buffered; the next write
		// completes it.
		w.buf = w.buf[:copy(w.buf, w.buf[n:])]
	}
	switch {
	case err != nil && !w.failing:
		w.failing = true
		w.log.Error("acct write failed", zap.String("day", w.day), zap.Error(err))
	case err == nil && w.failing:
		w.failing = false
		w.log.Warn("acct write recovered", zap.String("day", w.day))
	}
	if err == nil && w.maxSize > 0 && w.size >= w.maxSize {
		w.moveLocked("max-size")
	}
	if err != nil && len(w.buf) > maxBuffer {
		n := bytes.Count(w.buf, []byte("\n"))
		w.buf = w.buf[:0]
		w.log.Error("acct records dropped", zap.Int("records", n), zap.Error(err))
	}
	return err
}

// Flush writes the buffered records to the file (without fsync).
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked()
}

// sync fsyncs the current file if it was written to since the last sync.
// The fsync runs outside the lock, so writers are not held up by the disk.
func (w *Writer) sync() error {
	w.mu.Lock()
	f, dirty := w.f, w.dirty
	w.dirty = false
	w.mu.Unlock()
	if f == nil || !dirty {
		return nil
	}
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) { // closed by a rotation: it synced
		w.log.Error("acct fsync failed", zap.Error(err))
		return err
	}
	return nil
}

// Run flushes the buffer every FlushInterval and fsyncs the file at most
// every few seconds, until ctx is done; then it flushes and fsyncs once more
// and returns the error of that last flush, if any. It starts no other
// goroutine. Call Close after Run has returned.
func (w *Writer) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	lastSync := time.Now()
	var lastExpire time.Time
	for {
		select {
		case <-ctx.Done():
			return errors.Join(w.Flush(), w.sync())
		case <-t.C:
			w.Flush() // logged by writeLocked
			w.moveIfDue()
			if w.deleteAfter > 0 && time.Since(lastExpire) >= expireInterval {
				w.expire()
				lastExpire = time.Now()
			}
			if time.Since(lastSync) >= syncInterval {
				w.sync()
				lastSync = time.Now()
			}
		}
	}
}

// Close flushes, fsyncs and closes the file. Records written after Close
// are dropped. Close is idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.writeLocked()
	if len(w.buf) > 0 {
		w.log.Error("acct records lost at close", zap.Int("records", bytes.Count(w.buf, []byte("\n"))))
	}
	if w.f != nil {
		err = errors.Join(err, w.f.Sync(), w.f.Close())
		w.f = nil
	}
	return err
}

// ReadFile parses an acct CSV file: the first row names the columns, and
// each later row becomes a map from column name to value. Rows with a
// different number of fields than the header are an error.
func ReadFile(path string) ([]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(f)
	header, err := cr.Read()
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("acct: %s: %w", path, err)
	}
	var out []map[string]string
	for {
		row, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("acct: %s: %w", path, err)
		}
		m := make(map[string]string, len(header))
		for i, k := range header {
			m[k] = row[i]
		}
		out = append(out, m)
	}
}
