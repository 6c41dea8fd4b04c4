package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Duration is a time span written the PowerMTA way: a sequence of
// number-unit pairs from the largest unit to the smallest, each unit at most
// once, e.g. "30s", "10m", "1h30m", "4d12h", "2w". Units are w (7 days),
// d (24 hours), h, m, s and ms. A bare "0" is zero. Negative values are
// rejected.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

var durationUnits = []struct {
	name string
	d    time.Duration
}{
	{"w", 7 * 24 * time.Hour},
	{"d", 24 * time.Hour},
	{"h", time.Hour},
	{"m", time.Minute},
	{"s", time.Second},
	{"ms", time.Millisecond},
}

// ParseDuration parses a PowerMTA-style duration such as "4d12h".
func ParseDuration(s string) (Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w", s, err)
	}
	return d, nil
}

func parseDuration(s string) (Duration, error) {
	switch {
	case s == "":
		return 0, errors.New("empty")
	case s == "0":
		return 0, nil
	case s[0] == '-':
		return 0, errors.New("must not be negative")
	}
	var total time.Duration
	last := -1 // index in durationUnits of the previous unit
	for rest := s; rest != ""; {
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == 0 {
			return 0, fmt.Errorf("expected a number at %q", rest)
		}
		n, err := strconv.ParseInt(rest[:j], 10, 64)
		if err != nil {
			return 0, errors.New("number too large")
		}
		rest = rest[j:]
		k := 0
		for k < len(rest) && rest[k] >= 'a' && rest[k] <= 'z' {
			k++
		}
		unit := rest[:k]
		rest = rest[k:]
		if unit == "" {
			return 0, fmt.Errorf(`missing unit after %d (w, d, h, m, s or ms, e.g. "%ds")`, n, n)
		}
		u := -1
		for i, du := range durationUnits {
			if du.name == unit {
				u = i
			}
		}
		switch {
		case u < 0:
			return 0, fmt.Errorf("unknown unit %q (use w, d, h, m, s or ms)", unit)
		case u <= last:
			return 0, errors.New("units must go from largest to smallest, each at most once")
		}
		last = u
		step := durationUnits[u].d
		if n > math.MaxInt64/int64(step) || total > time.Duration(math.MaxInt64)-time.Duration(n)*step {
			return 0, errors.New("too large")
		}
		total += time.Duration(n) * step
	}
	return Duration(total), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText implements encoding.TextMarshaler; it writes String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String formats d the way ParseDuration reads it: "4d12h", "1h30m", "0s".
// Days are the largest unit used. A negative span or one with a part below a
// millisecond, which a config file cannot express, falls back to
// time.Duration's format.
func (d Duration) String() string {
	if d == 0 {
		return "0s"
	}
	if d < 0 || time.Duration(d)%time.Millisecond != 0 {
		return time.Duration(d).String()
	}
	var b []byte
	rest := time.Duration(d)
	for _, u := range durationUnits[1:] { // no weeks: "14d" reads better than "2w"
		if rest >= u.d {
			b = strconv.AppendInt(b, int64(rest/u.d), 10)
			b = append(b, u.name...)
			rest %= u.d
		}
	}
	return string(b)
}

// Size is a byte count written as an integer with an optional binary
// suffix: "1048576", "512k" or "512K" (KiB), "50M" (MiB), "1G" (GiB).
type Size int64

// Bytes returns the size in bytes.
func (s Size) Bytes() int64 { return int64(s) }

var sizeUnits = []struct {
	name byte
	n    int64
}{{'G', 1 << 30}, {'M', 1 << 20}, {'K', 1 << 10}}

// ParseSize parses a byte count such as "50M".
func ParseSize(s string) (Size, error) {
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	return n, nil
}

func parseSize(s string) (Size, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	if s[0] == '-' {
		return 0, errors.New("must not be negative")
	}
	digits := s
	mult := int64(1)
	if last := s[len(s)-1]; last < '0' || last > '9' {
		mult = 0
		for _, u := range sizeUnits {
			if last == u.name || last == u.name+('a'-'A') {
				mult = u.n
			}
		}
		if mult == 0 {
			return 0, fmt.Errorf("unknown suffix %q (use K, M or G)", last)
		}
		digits = s[:len(s)-1]
	}
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, errors.New("expected an integer with an optional K, M or G suffix")
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, errors.New("too large")
	}
	return Size(n * mult), nil
}

// UnmarshalText implements encoding.TextUnmarshaler. A TOML integer is read
// as a byte count.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText implements encoding.TextMarshaler; it writes String.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String formats s with the largest suffix that divides it exactly: "50M".
func (s Size) String() string {
	for _, u := range sizeUnits {
		if s > 0 && int64(s)%u.n == 0 {
			return strconv.FormatInt(int64(s)/u.n, 10) + string(u.name)
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// ParseCIDR parses "10.0.0.0/8", "::1/128" or a bare address, which means a
// single host (/32 or /128). Host bits are cleared ("10.1.2.3/8" becomes
// 10.0.0.0/8), and an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) becomes
// the IPv4 prefix it covers.
func ParseCIDR(s string) (CIDR, error) {
	p, err := parseCIDR(s)
	if err != nil {
		return CIDR{}, fmt.Errorf("invalid CIDR %q: %w", s, err)
	}
	return CIDR{p}, nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty")
	}
	if strings.Contains(s, "%") {
		return netip.Prefix{}, errors.New("zones are not allowed")
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, errors.New(`expected "address/bits" or an address`)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New(`expected "address/bits" or an address`)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseCIDR.
func (c *CIDR) UnmarshalText(b []byte) error {
	v, err := ParseCIDR(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Regexp is a regular expression matched case-insensitively. It is written
// either bare ("mailbox full") or between slashes ("/mailbox full/"), as in
// PowerMTA's pattern lists; the slashes are not part of the expression.
type Regexp struct {
	*regexp.Regexp
	src string // as written, without the slashes
}

// ParseRegexp compiles s, with or without surrounding slashes, to match
// case-insensitively. An empty expression is rejected: it would match
// everything.
func ParseRegexp(s string) (Regexp, error) {
	src := s
	if len(src) >= 2 && src[0] == '/' && src[len(src)-1] == '/' {
		src = src[1 : len(src)-1]
	}
	if src == "" {
		return Regexp{}, fmt.Errorf("invalid regexp %q: empty", s)
	}
	if _, err := regexp.Compile(src); err != nil { // its message quotes src, not our "(?i)"+src
		return Regexp{}, fmt.Errorf("invalid regexp %q: %w", s, err)
	}
	re, err := regexp.Compile("(?i)" + src)
	if err != nil {
		return Regexp{}, fmt.Errorf("invalid regexp %q: %w", s, err)
	}
	return Regexp{Regexp: re, src: src}, nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseRegexp.
func (r *Regexp) UnmarshalText(b []byte) error {
	v, err := ParseRegexp(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText implements encoding.TextMarshaler; it writes String.
func (r Regexp) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String returns the expression between slashes, as written: "/mailbox full/".
// It is "" for the zero Regexp.
func (r Regexp) String() string {
	if r.Regexp == nil {
		return ""
	}
	return "/" + r.src + "/"
}
