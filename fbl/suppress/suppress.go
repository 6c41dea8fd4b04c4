// Package suppress keeps the suppression list: addresses and whole domains
// that Sluice must not mail, globally or for one source or tenant, each with
// a reason, the time it was added and an optional expiry. Local stores it in
// a key-value store (the spool's pebble database) on one node; Redis shares
// it across a fleet, where every node sees a new entry within a second.
// Both keep the whole list in memory, so IsSuppressed at RCPT costs a few
// map lookups and no I/O.
package suppress

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Reason says why an address is suppressed.
type Reason string

// The reasons Sluice itself records.
const (
	Complaint   Reason = "complaint"   // a feedback-loop report (ARF, JMRP)
	HardBounce  Reason = "hard-bounce" // a permanent failure, at RCPT or by DSN
	Unsubscribe Reason = "unsubscribe" // RFC 8058 one-click or the mailto form
	Manual      Reason = "manual"      // added by an operator
)

// Valid reports whether r is one of the four known reasons.
func (r Reason) Valid() bool {
	switch r {
	case Complaint, HardBounce, Unsubscribe, Manual:
		return true
	}
	return false
}

// Entry is one suppressed address or domain in one scope.
type Entry struct {
	// Addr is "user@domain" for one mailbox or "@domain" for a whole
	// domain (not its subdomains), stored lower-case (see Normalize).
	Addr string
	// Scope is "" for the global list, else a source or tenant name.
	Scope string
	// Reason is why the entry exists.
	Reason Reason
	// Added is when the entry was added; Add fills in the store's clock if
	// it is zero.
	Added time.Time
	// Expires is when the entry stops counting; zero means never.
	Expires time.Time
	// Note is free text for operators: the report id, a ticket number.
	Note string
}

// Expired reports whether e has an expiry at or before now.
func (e Entry) Expired(now time.Time) bool {
	return !e.Expires.IsZero() && !now.Before(e.Expires)
}

// Store is the suppression list. Local and Redis implement it, and pass the
// same conformance suite.
type Store interface {
	// Add stores e, replacing any entry for the same scope and address, and
	// announces it to Subscribe. Addr is normalised first.
	Add(ctx context.Context, e Entry) error
	// Remove deletes the entry for addr in scope; ErrNotFound if none.
	Remove(ctx context.Context, scope, addr string) error
	// IsSuppressed checks addr under scope and globally, the exact address
	// first and then its domain, and returns the first live entry found in
	// this order: scope exact, global exact, scope domain, global domain.
	// Expired entries do not count.
	IsSuppressed(ctx context.Context, scope, addr string) (Entry, bool, error)
	// List calls fn for every live entry of scope ("" is the global list,
	// AllScopes every scope), in no particular order, and stops at the
	// first error fn returns, which List returns. fn may call the store.
	List(ctx context.Context, scope string, fn func(Entry) error) error
	// Subscribe returns a channel of newly added entries, including those
	// added on other nodes when the store is shared, so that the scheduler
	// can cancel mail already queued. The channel is closed when ctx ends or
	// the store is closed. A subscriber that falls more than MaxPending
	// entries behind loses the excess (logged).
	Subscribe(ctx context.Context) <-chan Entry
	// Close stops the store's goroutines and closes every subscription. It
	// does not close the KV or the Redis client it was given.
	Close() error
}

// AllScopes, given to List, lists every scope, the global one included.
const AllScopes = "*"

// Limits on what an entry may hold.
const (
	MaxAddrLen  = 320  // RFC 5321 §4.5.3.1.1 and §4.5.3.1.2: 64 + "@" + 255
	MaxScopeLen = 128  // a source or tenant name
	MaxNoteLen  = 1024 // operator text
)

// Errors returned by the stores.
var (
	// ErrNotFound is returned by Remove when there is no such entry.
	ErrNotFound = errors.New("suppress: no such entry")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("suppress: store closed")
	// ErrInvalid wraps every validation failure (address, scope, reason).
	ErrInvalid = errors.New("suppress: invalid entry")
)

// Normalize returns addr in the form entries are stored and looked up in:
// surrounding space and angle brackets removed, a trailing dot dropped from
// the domain, all lower-case. "@domain" stands for a whole domain.
//
// Deviation: RFC 5321 §2.4 lets a local-part be case-sensitive; suppression
// lists, like every large receiver, treat it as case-insensitive, so that a
// complaint about User@ also covers user@.
func Normalize(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		a = a[1 : len(a)-1]
	}
	at := strings.LastIndexByte(a, '@') // a quoted local-part may hold '@' (RFC 5321 §4.1.2)
	if at < 0 {
		return "", fmt.Errorf("%w: address %q has no @", ErrInvalid, clip(addr))
	}
	if at > 64 { // RFC 5321 §4.5.3.1.1
		return "", fmt.Errorf("%w: local-part of %q longer than 64 octets", ErrInvalid, clip(addr))
	}
	dom := strings.TrimSuffix(a[at+1:], ".")
	if dom == "" || len(dom) > 255 { // RFC 5321 §4.5.3.1.2
		return "", fmt.Errorf("%w: bad domain in %q", ErrInvalid, clip(addr))
	}
	a = a[:at+1] + dom
	if !printable(a) || strings.ContainsAny(a, " \t") || strings.HasPrefix(dom, ".") || strings.Contains(dom, "..") {
		return "", fmt.Errorf("%w: bad characters in %q", ErrInvalid, clip(addr))
	}
	return lower(a), nil
}

// domainOf returns "@domain" for a normalised address: a substring of it,
// so the lookup allocates nothing.
func domainOf(addr string) string {
	return addr[strings.LastIndexByte(addr, '@'):]
}

// lower lower-cases s, allocating only when s has an upper-case letter
// (strings.ToLower already returns s itself for lower-case ASCII).
func lower(s string) string { return strings.ToLower(s) }

// checkScope validates a scope name: printable, no spaces, braces (they
// would break Redis hash tags) or '*'.
func checkScope(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > MaxScopeLen || !printable(s) || strings.ContainsAny(s, " \t{}*") {
		return fmt.Errorf("%w: bad scope %q", ErrInvalid, clip(s))
	}
	return nil
}

// prepare validates e and puts it in stored form.
func prepare(e Entry, now time.Time) (Entry, error) {
	a, err := Normalize(e.Addr)
	if err != nil {
		return Entry{}, err
	}
	e.Addr = a
	if err := checkScope(e.Scope); err != nil {
		return Entry{}, err
	}
	if !e.Reason.Valid() {
		return Entry{}, fmt.Errorf("%w: unknown reason %q", ErrInvalid, clip(string(e.Reason)))
	}
	if len(e.Note) > MaxNoteLen || !utf8.ValidString(e.Note) {
		return Entry{}, fmt.Errorf("%w: note longer than %d bytes or not UTF-8", ErrInvalid, MaxNoteLen)
	}
	if e.Added.IsZero() {
		e.Added = now
	}
	return e, nil
}

// lookupKey validates a scope and address given to IsSuppressed or Remove.
func lookupKey(scope, addr string) (string, error) {
	if err := checkScope(scope); err != nil {
		return "", err
	}
	return Normalize(addr)
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// clip shortens input quoted in an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
