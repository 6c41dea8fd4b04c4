package acct

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"go.uber.org/zap"
)

// Rotation and retention ([acct-file], PowerMTA's <acct-file> directives).
// The file being written is always acct-YYYY-MM-DD.csv. Moving it aside
// (max-size reached, or move-interval elapsed) renames it to
// acct-YYYY-MM-DD-HHMMSS.mmm.csv, the UTC time of the move, and starts a new
// acct-YYYY-MM-DD.csv with its header row. Since '-' sorts before '.', the
// moved parts of a day sort before its current file, and every name still
// matches acct-*.csv: readers that sort names read records oldest first.

// movedLayout is the time suffix of a moved file.
const movedLayout = "150405.000"

// expireInterval is how often Run looks for files past delete-after.
const expireInterval = time.Minute

// acctName matches the files this package writes, current or moved.
var acctName = regexp.MustCompile(`^acct-\d{4}-\d{2}-\d{2}(-\d{6}\.\d{3})?\.csv$`)

// scheduleMove sets when move-interval next moves the file: the next
// multiple of the interval since the zero time, so 1h moves on the hour.
func (w *Writer) scheduleMove(now time.Time) {
	if w.moveInterval > 0 {
		w.nextMove = now.UTC().Truncate(w.moveInterval).Add(w.moveInterval)
	}
}

// moveIfDue moves the file aside when move-interval has elapsed; at a day
// boundary it starts the new day's file instead (the old one keeps its day
// name).
func (w *Writer) moveIfDue() {
	if w.moveInterval <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if w.closed || now.Before(w.nextMove) {
		return
	}
	w.writeLocked()
	if day := now.UTC().Format(dayLayout); day > w.day {
		w.rotateLocked(day)
	} else {
		w.moveLocked("move-interval")
	}
	w.scheduleMove(now)
}

// moveLocked renames the current file to its moved name and opens a new
// one for the same day. The buffer must have been written first. A file
// holding no records is left alone. On a failed rename the writer keeps
// appending to the current file.
func (w *Writer) moveLocked(reason string) {
	if w.f == nil || w.closed || !w.records {
		return
	}
	cur := filepath.Join(w.dir, "acct-"+w.day+".csv")
	if err := errors.Join(w.f.Sync(), w.f.Close()); err != nil {
		w.log.Error("acct file close failed", zap.String("day", w.day), zap.Error(err))
	}
	w.f, w.dirty = nil, false
	moved := w.movedName(w.now())
	if err := os.Rename(cur, moved); err != nil {
		w.log.Error("acct file move failed", zap.String("file", cur), zap.Error(err))
	} else {
		if err := syncDir(w.dir); err != nil {
			w.log.Warn("acct directory fsync failed", zap.Error(err))
		}
		w.log.Info("acct file moved", zap.String("file", moved), zap.String("reason", reason), zap.Int64("bytes", w.size))
	}
	if err := w.reopenLocked(); err != nil {
		w.log.Error("acct file open failed", zap.String("day", w.day), zap.Error(err))
	}
}

// movedName returns a free name for the current file moved at now. Two
// moves within one millisecond take the next free millisecond.
func (w *Writer) movedName(now time.Time) string {
	t := now.UTC()
	base := "acct-" + w.day + "-"
	var name string
	for range 1000 {
		name = filepath.Join(w.dir, base+t.Format(movedLayout)+".csv")
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
		t = t.Add(time.Millisecond)
	}
	return name
}

// expire deletes the acct files, current one excepted, last modified more
// than delete-after ago. It returns how many it deleted.
func (w *Writer) expire() int {
	if w.deleteAfter <= 0 {
		return 0
	}
	w.mu.Lock()
	cur := "acct-" + w.day + ".csv"
	w.mu.Unlock()
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		w.log.Warn("acct retention: cannot list the directory", zap.Error(err))
		return 0
	}
	cutoff := w.now().Add(-w.deleteAfter)
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == cur || !acctName.MatchString(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		path := filepath.Join(w.dir, e.Name())
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("acct retention: delete failed", zap.String("file", path), zap.Error(err))
			continue
		}
		n++
		w.log.Info("acct file deleted", zap.String("file", path), zap.Time("modified", info.ModTime()))
	}
	return n
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
