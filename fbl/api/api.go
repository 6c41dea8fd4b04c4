// Package api is the HTTP side of feedback loops and suppression, mounted
// on the admin API by the daemon: report ingestion (POST /api/v1/fbl, POST
// /api/v1/bounces) and the suppression list (/api/v1/suppressions: list,
// add, remove, CSV import and export). The handlers are plain
// http.Handlers; authentication is the admin server's.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/fbl/ingest"
	"github.com/sluice-mta/sluice/fbl/suppress"
)

// Ingester processes one report (ingest.Service).
type Ingester interface {
	Ingest(ctx context.Context, kind ingest.Kind, msg []byte) (ingest.Result, error)
}

// Mounter registers a handler (admin.Server.Handle).
type Mounter interface {
	Handle(pattern string, h http.Handler, extraTokens ...string)
}

// Routes lists the patterns Mount registers.
var Routes = []string{
	"POST /api/v1/fbl", "POST /api/v1/bounces",
	"GET /api/v1/suppressions", "POST /api/v1/suppressions", "DELETE /api/v1/suppressions",
	"POST /api/v1/suppressions/import", "GET /api/v1/suppressions/export",
}

// Mount registers every route on m.
func Mount(m Mounter, in Ingester, store suppress.Store) {
	h := &handlers{in: in, store: store}
	m.Handle(Routes[0], h.report(ingest.KindFBL))
	m.Handle(Routes[1], h.report(ingest.KindBounce))
	m.Handle(Routes[2], http.HandlerFunc(h.list))
	m.Handle(Routes[3], http.HandlerFunc(h.add))
	m.Handle(Routes[4], http.HandlerFunc(h.remove))
	m.Handle(Routes[5], http.HandlerFunc(h.importCSV))
	m.Handle(Routes[6], http.HandlerFunc(h.exportCSV))
}

type handlers struct {
	in    Ingester
	store suppress.Store
}

// maxImport bounds an imported CSV (about a million entries).
const maxImport = 256 << 20

// report takes one raw message (message/rfc822 or anything) as the body.
func (h *handlers) report(kind ingest.Kind) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, ingest.MaxSize+1))
		if err != nil {
			writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
			return
		}
		res, err := h.in.Ingest(r.Context(), kind, body)
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, res)
		case errors.Is(err, ingest.ErrTooLarge):
			writeError(w, http.StatusRequestEntityTooLarge, "report larger than 10 MiB")
		case errors.Is(err, ingest.ErrNotReport), errors.Is(err, ingest.ErrForged):
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error(), "result": res})
		default:
			writeError(w, http.StatusServiceUnavailable, err.Error())
		}
	})
}

// Entry is the JSON form of a suppression entry.
type Entry struct {
	Addr    string    `json:"addr"`
	Scope   string    `json:"scope,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Added   time.Time `json:"added,omitzero"`
	Expires time.Time `json:"expires,omitzero"`
	Note    string    `json:"note,omitempty"`
	// TTL, on add, sets Expires to now plus this ("30d", "12h").
	TTL string `json:"ttl,omitempty"`
}

func toJSON(e suppress.Entry) Entry {
	return Entry{Addr: e.Addr, Scope: e.Scope, Reason: string(e.Reason), Added: e.Added, Expires: e.Expires, Note: e.Note}
}

// list: GET /api/v1/suppressions?scope=S&addr=A&limit=N. scope "*" is every
// scope; without scope, the global list. With addr, the one lookup.
func (h *handlers) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if a := q.Get("addr"); a != "" {
		e, ok, err := h.store.IsSuppressed(r.Context(), q.Get("scope"), a)
		if err != nil {
			writeStoreError(w, err)
			return
		}
		if !ok {
			writeJSON(w, http.StatusOK, map[string]any{"suppressed": false})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"suppressed": true, "entry": toJSON(e)})
		return
	}
	limit := 10000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit: want a positive number")
			return
		}
		limit = n
	}
	out := []Entry{}
	errEnough := errors.New("enough")
	err := h.store.List(r.Context(), q.Get("scope"), func(e suppress.Entry) error {
		if len(out) >= limit {
			return errEnough
		}
		out = append(out, toJSON(e))
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": out, "truncated": errors.Is(err, errEnough)})
}

// add: POST /api/v1/suppressions with an Entry as JSON; reason defaults to
// manual.
func (h *handlers) add(w http.ResponseWriter, r *http.Request) {
	var in Entry
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "request body: "+err.Error())
		return
	}
	e := suppress.Entry{Addr: in.Addr, Scope: in.Scope, Reason: suppress.Reason(in.Reason), Expires: in.Expires, Note: in.Note}
	if e.Reason == "" {
		e.Reason = suppress.Manual
	}
	if in.TTL != "" {
		d, err := config.ParseDuration(in.TTL)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "ttl: want a duration such as 30d")
			return
		}
		e.Expires = time.Now().Add(d.D())
	}
	if err := h.store.Add(r.Context(), e); err != nil {
		writeStoreError(w, err)
		return
	}
	got, _, _ := h.store.IsSuppressed(r.Context(), e.Scope, e.Addr)
	writeJSON(w, http.StatusCreated, toJSON(got))
}

// remove: DELETE /api/v1/suppressions?addr=A&scope=S.
func (h *handlers) remove(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("addr") == "" {
		writeError(w, http.StatusBadRequest, "addr is required")
		return
	}
	if err := h.store.Remove(r.Context(), q.Get("scope"), q.Get("addr")); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// importCSV: POST /api/v1/suppressions/import with the CSV of
// suppress.ImportCSV as the body. All lines are checked before any is added.
func (h *handlers) importCSV(w http.ResponseWriter, r *http.Request) {
	entries, err := suppress.ImportCSV(io.LimitReader(r.Body, maxImport))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	for i, e := range entries {
		if err := h.store.Add(r.Context(), e); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "imported": i})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]int{"imported": len(entries)})
}

// exportCSV: GET /api/v1/suppressions/export?scope=S ("*" every scope).
func (h *handlers) exportCSV(w http.ResponseWriter, r *http.Request) {
	scope := r.URL.Query().Get("scope")
	if scope == "" {
		scope = suppress.AllScopes
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := suppress.Export(r.Context(), h.store, scope, w); err != nil {
		// Headers are gone; the client sees a truncated file and this line.
		fmt.Fprintf(w, "\n# export failed: %v\n", err)
	}
}

func writeStoreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, suppress.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, suppress.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		writeError(w, http.StatusServiceUnavailable, strings.TrimPrefix(err.Error(), "suppress: "))
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
