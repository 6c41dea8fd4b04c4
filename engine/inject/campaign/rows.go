// Package campaign is the logic of `sluice inject`: it reads a CSV whose
// header row names the template's variables (one of them "email"), renders
// the RFC 5322 template per row, and injects over SMTP (pipelined, several
// sessions) or HTTP (batches to POST /api/v1/inject). Accepted rows are
// recorded in a checkpoint file, fsynced, so that a run interrupted and
// started again does not send them twice. Bad rows are reported by their
// line and the rest go on.
package campaign

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sluice-mta/sluice/engine/inject"
)

// Row is one recipient: its CSV line and its values by column name.
type Row struct {
	Line   int
	Email  string
	Values map[string]string
}

// RowError is a row that was not injected, and why.
type RowError struct {
	Line   int    `json:"line"`
	Email  string `json:"email,omitempty"`
	Reason string `json:"reason"`
}

// ReadRows reads the whole CSV. A missing "email" column is an error; a
// row with the wrong number of fields or an invalid address goes to bad,
// with its line, and the others are returned.
func ReadRows(r io.Reader) (rows []Row, bad []RowError, err error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, errors.New("recipients: empty file, want a header row naming the columns")
		}
		return nil, nil, fmt.Errorf("recipients: header row: %w", err)
	}
	col := -1
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) // a BOM from spreadsheets
		header[i] = h
		if strings.EqualFold(h, "email") {
			col = i
			header[i] = "email"
		}
	}
	if col < 0 {
		return nil, nil, fmt.Errorf("recipients: the header row %q has no email column", strings.Join(header, ","))
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, bad, nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.StartLine
				if errors.Is(pe.Err, csv.ErrFieldCount) {
					bad = append(bad, RowError{Line: line, Reason: fmt.Sprintf("%d fields, the header has %d", len(rec), len(header))})
					continue
				}
				bad = append(bad, RowError{Line: line, Reason: pe.Err.Error()})
				if errors.Is(pe.Err, csv.ErrQuote) || errors.Is(pe.Err, csv.ErrBareQuote) {
					continue
				}
			}
			return rows, bad, fmt.Errorf("recipients: line %d: %w", line, err)
		}
		email := strings.TrimSpace(rec[col])
		if err := inject.CheckAddress(email); err != nil {
			bad = append(bad, RowError{Line: line, Email: email, Reason: "invalid address: " + err.Error()})
			continue
		}
		v := make(map[string]string, len(header))
		for i, h := range header {
			v[h] = rec[i]
		}
		v["email"] = email
		rows = append(rows, Row{Line: line, Email: email, Values: v})
	}
}
