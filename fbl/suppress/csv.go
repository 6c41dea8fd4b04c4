package suppress

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// csvHeader names the columns of the CSV form; times are RFC 3339, in UTC,
// and empty when zero.
var csvHeader = []string{"addr", "scope", "reason", "added", "expires", "note"}

// maxCSVLine bounds one physical line of an import.
const maxCSVLine = 4096

// CSVWriter writes entries in the CSV form, header first.
type CSVWriter struct {
	w      *csv.Writer
	header bool
}

// NewCSVWriter returns a CSVWriter on w.
func NewCSVWriter(w io.Writer) *CSVWriter { return &CSVWriter{w: csv.NewWriter(w)} }

// Write writes one entry (and the header before the first).
func (cw *CSVWriter) Write(e Entry) error {
	if !cw.header {
		cw.header = true
		if err := cw.w.Write(csvHeader); err != nil {
			return err
		}
	}
	return cw.w.Write([]string{e.Addr, e.Scope, string(e.Reason), csvTime(e.Added), csvTime(e.Expires), e.Note})
}

// Flush writes the header if nothing was written, flushes, and returns the
// first write error.
func (cw *CSVWriter) Flush() error {
	if !cw.header {
		cw.header = true
		cw.w.Write(csvHeader)
	}
	cw.w.Flush()
	return cw.w.Error()
}

// ExportCSV writes entries to w in the CSV form.
func ExportCSV(w io.Writer, entries []Entry) error {
	cw := NewCSVWriter(w)
	for _, e := range entries {
		if err := cw.Write(e); err != nil {
			return err
		}
	}
	return cw.Flush()
}

// Export streams the live entries of scope (or AllScopes) from s to w in
// the CSV form.
func Export(ctx context.Context, s Store, scope string, w io.Writer) error {
	cw := NewCSVWriter(w)
	if err := s.List(ctx, scope, cw.Write); err != nil {
		return err
	}
	return cw.Flush()
}

// ImportCSV reads entries in the CSV form. The header line is optional
// (recognised by its first field, "addr"); a record may stop after any
// column. An empty reason means manual. Each entry is validated and
// normalised as Add would; the first bad line gives an error naming it.
func ImportCSV(r io.Reader) ([]Entry, error) {
	cr := csv.NewReader(&lineLimit{r: r})
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	var out []Entry
	for first := true; ; first = false {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("suppress: csv: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if first && strings.EqualFold(strings.TrimSpace(rec[0]), "addr") {
			continue
		}
		e, err := csvEntry(rec)
		if err != nil {
			return nil, fmt.Errorf("suppress: csv line %d: %w", line, err)
		}
		out = append(out, e)
	}
}

func csvEntry(rec []string) (Entry, error) {
	if len(rec) > len(csvHeader) {
		return Entry{}, fmt.Errorf("%d fields, at most %d", len(rec), len(csvHeader))
	}
	f := make([]string, len(csvHeader))
	copy(f, rec)
	e := Entry{Addr: f[0], Scope: strings.TrimSpace(f[1]), Reason: Reason(strings.TrimSpace(f[2])), Note: f[5]}
	if e.Reason == "" {
		e.Reason = Manual
	}
	var err error
	if e.Added, err = parseCSVTime(f[3]); err != nil {
		return Entry{}, fmt.Errorf("added: %w", err)
	}
	if e.Expires, err = parseCSVTime(f[4]); err != nil {
		return Entry{}, fmt.Errorf("expires: %w", err)
	}
	return prepare(e, e.Added) // keeps Added zero when the column is empty
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseCSVTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not an RFC 3339 time: %q", clip(s))
	}
	return t.UTC(), nil
}

// lineLimit fails a read once a physical line passes maxCSVLine bytes, so
// that a file without newlines cannot make csv.Reader buffer it whole.
type lineLimit struct {
	r   io.Reader
	run int // bytes since the last '\n'
}

func (l *lineLimit) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, c := range p[:n] {
		if c == '\n' {
			l.run = 0
		} else if l.run++; l.run > maxCSVLine {
			return 0, fmt.Errorf("line longer than %d bytes", maxCSVLine)
		}
	}
	return n, err
}
