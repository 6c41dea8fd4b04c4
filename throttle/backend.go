package throttle

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backend is the contract the scheduler codes against. Every method is safe
// for concurrent use. Keys are non-empty strings; a limit is a total over all
// the nodes that share the backend.
type Backend interface {
	// AcquireConn takes one of limit slots under key without waiting; ok is
	// false when all are held (always, for a limit of 0). A lease not renewed
	// within ttl expires by itself, so a crashed node frees its slots. A
	// lowered limit refuses new slots but lets the held ones run out.
	AcquireConn(ctx context.Context, key string, limit int, ttl time.Duration) (l Lease, ok bool, err error)

	// AllowN reports whether n messages may go now under rate and, if not,
	// how long until they may. It is GCRA: a request is admitted when the
	// key's theoretical arrival time (TAT) is within the burst tolerance
	// of now, and is then charged n intervals; so a batch of n may leave at
	// once and the time it borrowed is repaid before anything else goes.
	// The long-run rate is exact; see Rate for the burst. An unlimited rate
	// always allows and stores nothing.
	AllowN(ctx context.Context, key string, rate Rate, n int) (ok bool, retryAfter time.Duration, err error)

	// SetState sets key's mode until st.Until (zero: no expiry). ModeNormal
	// (or "") clears it. Every subscriber, on every node, sees the change
	// within a second.
	SetState(ctx context.Context, key string, st State) error

	// GetState returns key's mode; unset or expired reads as ModeNormal.
	GetState(ctx context.Context, key string) (State, error)

	// Subscribe delivers state changes until ctx ends, then closes the
	// channel. Changes to one key are coalesced while the reader is behind,
	// so the latest always arrives. Expiry is not announced: a Change
	// carries Until and the reader honours it. A Change whose Resync is
	// true means changes may have been missed (a reconnect, a failover):
	// re-read the keys of interest with GetState.
	Subscribe(ctx context.Context) <-chan Change

	// Counter adds delta to a shared counter and returns the new value
	// (delta 0 reads it). A positive ttl gives a counter that has no expiry
	// one, so it vanishes ttl after its first use (a fixed window); with
	// ttl 0 it never expires.
	Counter(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)

	// Close stops the backend's goroutines and ends its subscriptions.
	// Later calls fail with ErrClosed. Close is idempotent.
	Close() error
}

// Lease is one held connection slot.
type Lease interface {
	// Renew extends the lease by its ttl from now. It fails with
	// ErrLeaseLost if the lease expired or was released: the caller no
	// longer holds a slot and should close the connection.
	Renew(ctx context.Context) error
	// Release frees the slot. Releasing twice, or after expiry, is a no-op.
	Release(ctx context.Context) error
}

// Mode is a queue's (or a source IP's) delivery mode.
type Mode string

// Modes the scheduler acts on. Other non-empty names are stored as given.
const (
	ModeNormal    Mode = "normal"
	ModeBackoff   Mode = "backoff"   // backoff-* limits apply instead of the normal ones
	ModeDisabled  Mode = "disabled"  // a source IP disabled for a site (disable-source-ip)
	ModeSuspended Mode = "suspended" // no delivery at all
)

// State is a key's mode, when it ends and why it was set.
type State struct {
	Mode   Mode
	Until  time.Time // zero: until changed
	Reason string    // the pattern and the reply, for the records; capped at maxReason bytes
}

// Change is one state change, or a resync marker (empty Key).
type Change struct {
	Key   string
	State State
}

// Resync reports whether c is a marker meaning "changes may have been
// missed", rather than a change to one key.
func (c Change) Resync() bool { return c.Key == "" }

// Errors returned by every backend; match them with errors.Is.
var (
	ErrLeaseLost = errors.New("throttle: lease expired or released")
	ErrClosed    = errors.New("throttle: backend closed")
	ErrInvalid   = errors.New("throttle: invalid argument")
)

// Bounds on what a caller can make a backend store.
const (
	maxKey    = 512  // bytes in a key
	maxMode   = 64   // bytes in a mode name
	maxReason = 1024 // bytes kept of a reason
)

func checkKey(key string) error {
	if key == "" || len(key) > maxKey {
		return fmt.Errorf("%w: key must have 1 to %d bytes", ErrInvalid, maxKey)
	}
	return nil
}

func checkTTL(ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("%w: lease ttl %v is under 1ms", ErrInvalid, ttl)
	}
	return nil
}

// normalize validates st and returns it in canonical form: "" becomes
// ModeNormal, a normal state carries nothing else, a state whose Until is
// not after now becomes normal, and the reason is capped.
func normalize(st State, now time.Time) (State, error) {
	if st.Mode == "" || st.Mode == ModeNormal || (!st.Until.IsZero() && !st.Until.After(now)) {
		return State{Mode: ModeNormal}, nil
	}
	if len(st.Mode) > maxMode {
		return State{}, fmt.Errorf("%w: mode name longer than %d bytes", ErrInvalid, maxMode)
	}
	if len(st.Reason) > maxReason {
		st.Reason = st.Reason[:maxReason]
	}
	return st, nil
}

// checkCounter validates Counter arguments.
func checkCounter(key string, ttl time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("%w: counter ttl %v is negative", ErrInvalid, ttl)
	}
	return nil
}

// gcraStep is one GCRA decision in its virtual-scheduling form (ITU-T I.371,
// as in go-redis/redis_rate), in nanoseconds or any one unit: given the
// stored theoretical arrival time, now, the emission interval, the burst
// tolerance and the request size, it returns the TAT to store (only when ok)
// and, when not ok, the wait. The Lua script in redis_scripts.go mirrors it.
func gcraStep(tat, now, interval, tolerance int64, n int) (newTAT int64, ok bool, wait int64) {
	tat = max(tat, now)
	if tat-now > tolerance {
		return tat, false, tat - now - tolerance
	}
	return tat + int64(n)*interval, true, 0
}
