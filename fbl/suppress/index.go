package suppress

import (
	"encoding/json"
	"fmt"
	"time"
)

// index is the in-memory copy of a list: scope → address → entry. Its
// owner does the locking.
type index map[string]map[string]Entry

func (ix index) put(e Entry) {
	m := ix[e.Scope]
	if m == nil {
		m = make(map[string]Entry)
		ix[e.Scope] = m
	}
	m[e.Addr] = e
}

// del removes an entry and reports whether there was one.
func (ix index) del(scope, addr string) bool {
	m := ix[scope]
	if _, ok := m[addr]; !ok {
		return false
	}
	delete(m, addr)
	if len(m) == 0 {
		delete(ix, scope)
	}
	return true
}

// get returns the live entry for a normalised address, if any.
func (ix index) get(scope, addr string, now time.Time) (Entry, bool) {
	e, ok := ix[scope][addr]
	if !ok || e.Expired(now) {
		return Entry{}, false
	}
	return e, true
}

// lookup implements the order of Store.IsSuppressed on a normalised address.
func (ix index) lookup(scope, addr string, now time.Time) (Entry, bool) {
	dom := domainOf(addr)
	if scope != "" {
		if e, ok := ix.get(scope, addr, now); ok {
			return e, true
		}
	}
	if e, ok := ix.get("", addr, now); ok {
		return e, true
	}
	if scope != "" {
		if e, ok := ix.get(scope, dom, now); ok {
			return e, true
		}
	}
	return ix.get("", dom, now)
}

// snapshot copies the live entries of scope (or AllScopes), so that the
// caller can walk them without holding the lock.
func (ix index) snapshot(scope string, now time.Time) []Entry {
	var out []Entry
	add := func(m map[string]Entry) {
		for _, e := range m {
			if !e.Expired(now) {
				out = append(out, e)
			}
		}
	}
	if scope != AllScopes {
		add(ix[scope])
		return out
	}
	for _, m := range ix {
		add(m)
	}
	return out
}

// expired returns the entries whose expiry has passed.
func (ix index) expired(now time.Time) []Entry {
	var out []Entry
	for _, m := range ix {
		for _, e := range m {
			if e.Expired(now) {
				out = append(out, e)
			}
		}
	}
	return out
}

// record is how an entry is stored: the scope and address are in the key.
// Times are Unix nanoseconds, 0 for none.
type record struct {
	Reason  Reason `json:"r"`
	Added   int64  `json:"a,omitempty"`
	Expires int64  `json:"x,omitempty"`
	Note    string `json:"n,omitempty"`
}

// maxRecord bounds a stored value that decode accepts.
const maxRecord = 4096

func encodeRecord(e Entry) []byte {
	b, _ := json.Marshal(record{Reason: e.Reason, Added: nanos(e.Added), Expires: nanos(e.Expires), Note: e.Note})
	return b
}

func decodeRecord(scope, addr string, v []byte) (Entry, error) {
	if len(v) > maxRecord {
		return Entry{}, fmt.Errorf("suppress: stored value for %q is %d bytes", clip(addr), len(v))
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return Entry{}, fmt.Errorf("suppress: stored value for %q: %w", clip(addr), err)
	}
	return Entry{Addr: addr, Scope: scope, Reason: r.Reason, Added: fromNanos(r.Added), Expires: fromNanos(r.Expires), Note: r.Note}, nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
