package testenv

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Record is one accounting row, keyed by the field names of its file's
// header row (DOMAIN.md §2: type, timeLogged, rcpt, dsnStatus, bounceCat …).
// It is parsed here with encoding/csv so that the harness does not depend on
// engine/acct, the code under test.
type Record map[string]string

// Type returns the record type: "d", "b", "t", "r" …
func (r Record) Type() string { return r["type"] }

// Time parses a time field such as timeLogged or timeQueued.
func (r Record) Time(field string) (time.Time, error) {
	return ParseAcctTime(r[field])
}

// String renders the record compactly for failure messages.
func (r Record) String() string {
	keys := make([]string, 0, len(r))
	for k, v := range r {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%q", k, r[k])
	}
	b.WriteString("}")
	return b.String()
}

// AcctTimeLayout is the acct time format, "2026-11-28 10:00:00+0000".
// Fractional seconds, if written, are accepted by ParseAcctTime.
const AcctTimeLayout = "2006-01-02 15:04:05-0700"

// ParseAcctTime parses an acct time field.
func ParseAcctTime(s string) (time.Time, error) {
	return time.Parse(AcctTimeLayout, s)
}

// ParseAcct reads an acct CSV stream: a header row, then records. A final
// line without its newline is being written and is ignored. A record whose
// field count differs from the header's is an error.
func ParseAcct(r io.Reader) ([]Record, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		return nil, nil // not even a complete header yet
	}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if len(header) == 0 || header[0] != "type" {
		return nil, fmt.Errorf("header %q: first field is not \"type\"", header)
	}
	var recs []Record
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		if len(row) != len(header) {
			line, _ := cr.FieldPos(0)
			return recs, fmt.Errorf("line %d: %d fields, header has %d", line, len(row), len(header))
		}
		rec := make(Record, len(header))
		for i, name := range header {
			rec[name] = row[i]
		}
		recs = append(recs, rec)
	}
}

// ReadAcctFile parses one acct CSV file.
func ReadAcctFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := ParseAcct(f)
	if err != nil {
		return recs, fmt.Errorf("%s: %w", path, err)
	}
	return recs, nil
}

// ReadAcctDir reads every acct-YYYY-MM-DD.csv in dir, oldest file first.
// A missing directory holds no records.
func ReadAcctDir(dir string) ([]Record, error) {
	files, err := filepath.Glob(filepath.Join(dir, "acct-*.csv"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files) // the date in the name sorts lexically
	var all []Record
	for _, f := range files {
		recs, err := ReadAcctFile(f)
		all = append(all, recs...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// Filter returns the records that satisfy every predicate.
func Filter(recs []Record, preds ...func(Record) bool) []Record {
	var out []Record
	for _, r := range recs {
		if All(preds...)(r) {
			out = append(out, r)
		}
	}
	return out
}

// All combines predicates; with none it matches every record.
func All(preds ...func(Record) bool) func(Record) bool {
	return func(r Record) bool {
		for _, p := range preds {
			if p != nil && !p(r) {
				return false
			}
		}
		return true
	}
}

// OfType matches records of one of the given types ("d", "b", "t", "r").
func OfType(types ...string) func(Record) bool {
	return func(r Record) bool {
		for _, t := range types {
			if r.Type() == t {
				return true
			}
		}
		return false
	}
}

// ForRcpt matches records whose rcpt equals addr, ignoring case.
func ForRcpt(addr string) func(Record) bool {
	return func(r Record) bool { return strings.EqualFold(r["rcpt"], addr) }
}

// FieldIs matches records whose field equals value exactly.
func FieldIs(field, value string) func(Record) bool {
	return func(r Record) bool { return r[field] == value }
}
