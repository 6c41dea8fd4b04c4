package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	cases := []struct {
		in      string
		want    time.Duration
		str     string // String(); "" if the same as in
		wantErr string
	}{
		{in: "0", want: 0, str: "0s"},
		{in: "0s", want: 0},
		{in: "30s", want: 30 * time.Second},
		{in: "10m", want: 10 * time.Minute},
		{in: "1h", want: time.Hour},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "1d", want: day},
		{in: "4d12h", want: 4*day + 12*time.Hour},
		{in: "2w", want: 14 * day, str: "14d"},
		{in: "1w2d3h4m5s", want: 9*day + 3*time.Hour + 4*time.Minute + 5*time.Second, str: "9d3h4m5s"},
		{in: "1s500ms", want: 1500 * time.Millisecond},
		{in: "90m", want: 90 * time.Minute, str: "1h30m"},
		{in: "", wantErr: "empty"},
		{in: "-5m", wantErr: "must not be negative"},
		{in: "30", wantErr: "missing unit"},
		{in: "5x", wantErr: `unknown unit "x"`},
		{in: "5M", wantErr: "missing unit"},
		{in: "m", wantErr: "expected a number"},
		{in: "1h1h", wantErr: "largest to smallest"},
		{in: "30m1h", wantErr: "largest to smallest"},
		{in: " 5m", wantErr: "expected a number"},
		{in: "5m ", wantErr: "expected a number"},
		{in: "1.5h", wantErr: "missing unit"},
		{in: "99999999999999999999s", wantErr: "too large"},
		{in: "200000w", wantErr: "too large"},
		{in: "15250w2d", wantErr: "too large"},
	}
	for _, c := range cases {
		d, err := ParseDuration(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), `"`+c.in+`"`) {
				t.Errorf("ParseDuration(%q) = %v, %v; want error containing %q and the input", c.in, d, err, c.wantErr)
			}
			continue
		}
		if err != nil || d.D() != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", c.in, d.D(), err, c.want)
			continue
		}
		str := c.str
		if str == "" {
			str = c.in
		}
		if got := d.String(); got != str {
			t.Errorf("Duration(%v).String() = %q, want %q", c.want, got, str)
		}
		if back, err := ParseDuration(d.String()); err != nil || back != d {
			t.Errorf("round trip of %q: %v, %v", d.String(), back, err)
		}
	}
}

func TestDurationStringFallback(t *testing.T) {
	if got := Duration(1500 * time.Microsecond).String(); got != "1.5ms" {
		t.Errorf("String() = %q, want time.Duration's 1.5ms", got)
	}
	if got := Duration(-time.Second).String(); got != "-1s" {
		t.Errorf("String() = %q, want -1s", got)
	}
	b, err := Duration(36 * time.Hour).MarshalText()
	if err != nil || string(b) != "1d12h" {
		t.Errorf("MarshalText() = %q, %v", b, err)
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in      string
		want    int64
		str     string
		wantErr string
	}{
		{in: "0", want: 0, str: "0"},
		{in: "1048576", want: 1 << 20, str: "1M"},
		{in: "1000", want: 1000, str: "1000"},
		{in: "512k", want: 512 << 10, str: "512K"},
		{in: "10K", want: 10 << 10, str: "10K"},
		{in: "50M", want: 50 << 20, str: "50M"},
		{in: "50m", want: 50 << 20, str: "50M"},
		{in: "1G", want: 1 << 30, str: "1G"},
		{in: "2048M", want: 2 << 30, str: "2G"},
		{in: "", wantErr: "empty"},
		{in: "-1", wantErr: "negative"},
		{in: "M", wantErr: "expected an integer"},
		{in: "50MB", wantErr: `unknown suffix 'B'`},
		{in: "1.5M", wantErr: "expected an integer"},
		{in: "5 M", wantErr: "expected an integer"},
		{in: "1T", wantErr: "unknown suffix"},
		{in: "9999999999999G", wantErr: "too large"},
		{in: "99999999999999999999", wantErr: "too large"},
	}
	for _, c := range cases {
		s, err := ParseSize(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), `"`+c.in+`"`) {
				t.Errorf("ParseSize(%q) = %v, %v; want error containing %q and the input", c.in, s, err, c.wantErr)
			}
			continue
		}
		if err != nil || s.Bytes() != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, s.Bytes(), err, c.want)
			continue
		}
		if got := s.String(); got != c.str {
			t.Errorf("Size(%d).String() = %q, want %q", c.want, got, c.str)
		}
		if b, _ := s.MarshalText(); string(b) != c.str {
			t.Errorf("Size(%d).MarshalText() = %q, want %q", c.want, b, c.str)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	cases := []struct{ in, want, wantErr string }{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{in: "127.0.0.1", want: "127.0.0.1/32"},
		{in: "::1/128", want: "::1/128"},
		{in: "::1", want: "::1/128"},
		{in: "2001:db8::1/32", want: "2001:db8::/32"},
		{in: "0.0.0.0/0", want: "0.0.0.0/0"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{in: "::ffff:127.0.0.1", want: "127.0.0.1/32"},
		{in: "", wantErr: "empty"},
		{in: "10.0.0.0/33", wantErr: "address/bits"},
		{in: "10.0.0/8", wantErr: "address/bits"},
		{in: "example.test", wantErr: "address/bits"},
		{in: "fe80::1%eth0", wantErr: "zones"},
		{in: " 10.0.0.0/8", wantErr: "address/bits"},
	}
	for _, c := range cases {
		p, err := ParseCIDR(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), `invalid CIDR "`+c.in+`"`) {
				t.Errorf("ParseCIDR(%q) = %v, %v; want error containing %q", c.in, p, err, c.wantErr)
			}
			continue
		}
		if err != nil || p.String() != c.want {
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s", c.in, p, err, c.want)
		}
		var u CIDR
		if err := u.UnmarshalText([]byte(c.in)); err != nil || u != p {
			t.Errorf("UnmarshalText(%q) = %v, %v", c.in, u, err)
		}
		if b, _ := p.MarshalText(); string(b) != c.want {
			t.Errorf("MarshalText() = %q, want %q", b, c.want)
		}
	}
	if p, _ := ParseCIDR("10.0.0.0/8"); !p.Contains(netip.MustParseAddr("10.9.9.9")) {
		t.Error("10.0.0.0/8 does not contain 10.9.9.9")
	}
}

func TestParseRegexp(t *testing.T) {
	cases := []struct {
		in, str, match, noMatch, wantErr string
	}{
		{in: "/mailbox full/", str: "/mailbox full/", match: "552 5.2.2 Mailbox FULL", noMatch: "mailbox is full"},
		{in: "mailbox (is )?full", str: "/mailbox (is )?full/", match: "MAILBOX IS FULL"},
		{in: "/a/b/", str: "/a/b/", match: "x a/b y", noMatch: "ab"},
		{in: "/", str: "///", match: "a/b"},
		{in: "", wantErr: "empty"},
		{in: "//", wantErr: "empty"},
		{in: "/mailbox (full/", wantErr: "missing closing )"},
	}
	for _, c := range cases {
		r, err := ParseRegexp(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), `invalid regexp "`+c.in+`"`) {
				t.Errorf("ParseRegexp(%q) = %v, %v; want error containing %q", c.in, r, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRegexp(%q): %v", c.in, err)
			continue
		}
		if r.String() != c.str {
			t.Errorf("ParseRegexp(%q).String() = %q, want %q", c.in, r.String(), c.str)
		}
		if !r.MatchString(c.match) {
			t.Errorf("%s does not match %q", r, c.match)
		}
		if c.noMatch != "" && r.MatchString(c.noMatch) {
			t.Errorf("%s matches %q", r, c.noMatch)
		}
		back, err := ParseRegexp(r.String())
		if err != nil || back.String() != r.String() {
			t.Errorf("round trip of %s: %v, %v", r, back, err)
		}
	}
	if (Regexp{}).String() != "" {
		t.Error("zero Regexp's String is not empty")
	}
}
