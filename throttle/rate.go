package throttle

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Rate is a message rate: N per Per. The zero Rate is unlimited.
//
// Burst is how many messages may go back to back after an idle spell; 0 and
// 1 both mean one, so that traffic is smoothed to one message every Per/N
// (PowerMTA's max-msg-rate behaves this way: "1200/m" is 20 a second, not
// 1200 at the top of each minute).
type Rate struct {
	N     int
	Per   time.Duration
	Burst int
}

// Unlimited reports whether r sets no limit.
func (r Rate) Unlimited() bool { return r.N == 0 }

// Interval is the time one message costs under r (Per/N); 0 when unlimited.
func (r Rate) Interval() time.Duration {
	if r.N <= 0 || r.Per <= 0 {
		return 0
	}
	return r.Per / time.Duration(r.N)
}

// validate rejects rates that are neither unlimited nor a usable N per Per.
func (r Rate) validate() error {
	switch {
	case r.Unlimited():
		return nil
	case r.N < 0 || r.Burst < 0:
		return fmt.Errorf("%w: rate %d/%v burst %d is negative", ErrInvalid, r.N, r.Per, r.Burst)
	case r.Per <= 0:
		return fmt.Errorf("%w: rate %d per %v has no period", ErrInvalid, r.N, r.Per)
	case r.Interval() <= 0:
		return fmt.Errorf("%w: rate %d per %v is finer than 1ns a message", ErrInvalid, r.N, r.Per)
	}
	return nil
}

// gcra returns the emission interval T and the burst tolerance τ = (burst-1)·T,
// in nanoseconds, for a request of n messages.
func (r Rate) gcra(n int) (interval, tolerance int64, err error) {
	if err := r.validate(); err != nil {
		return 0, 0, err
	}
	interval = int64(r.Interval())
	if n < 1 || int64(n) > math.MaxInt64/4/interval {
		return 0, 0, fmt.Errorf("%w: cannot take %d messages at %v", ErrInvalid, n, r)
	}
	b := max(r.Burst, 1)
	if int64(b-1) > math.MaxInt64/4/interval {
		return 0, 0, fmt.Errorf("%w: burst %d too large for %v", ErrInvalid, b, r)
	}
	return interval, int64(b-1) * interval, nil
}

// units are the period suffixes ParseRate accepts and String prefers.
var units = []struct {
	s   string
	per time.Duration
}{{"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}}

// ParseRate reads "unlimited", "N/s", "N/m", "N/h", "N/d" or N per a Go
// duration ("10/30m"), optionally followed by " burst B".
func ParseRate(s string) (Rate, error) {
	in := strings.TrimSpace(s)
	if strings.EqualFold(in, "unlimited") {
		return Rate{}, nil
	}
	var r Rate
	if i := strings.Index(in, " burst "); i >= 0 {
		b, err := strconv.Atoi(strings.TrimSpace(in[i+len(" burst "):]))
		if err != nil || b < 1 {
			return Rate{}, fmt.Errorf("rate %q: burst must be a positive integer", s)
		}
		r.Burst, in = b, strings.TrimSpace(in[:i])
	}
	num, per, ok := strings.Cut(in, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/s, N/m, N/h, N/d or \"unlimited\"", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n < 1 {
		return Rate{}, fmt.Errorf("rate %q: count must be a positive integer (or use \"unlimited\")", s)
	}
	r.N = n
	per = strings.TrimSpace(per)
	for _, u := range units {
		if per == u.s {
			r.Per = u.per
		}
	}
	if r.Per == 0 {
		d, err := time.ParseDuration(per)
		if err != nil || d <= 0 {
			return Rate{}, fmt.Errorf("rate %q: period must be s, m, h, d or a positive duration", s)
		}
		r.Per = d
	}
	if err := r.validate(); err != nil {
		return Rate{}, fmt.Errorf("rate %q: %w", s, err)
	}
	return r, nil
}

// String renders r in the form ParseRate reads.
func (r Rate) String() string {
	if r.Unlimited() {
		return "unlimited"
	}
	per := r.Per.String()
	for _, u := range units {
		if r.Per == u.per {
			per = u.s
		}
	}
	s := strconv.Itoa(r.N) + "/" + per
	if r.Burst > 1 {
		s += " burst " + strconv.Itoa(r.Burst)
	}
	return s
}

// MarshalText implements encoding.TextMarshaler.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so that a configuration
// decoder reports a bad rate at its line.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
