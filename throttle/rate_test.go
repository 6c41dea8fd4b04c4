package throttle

import (
	"errors"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	cases := []struct {
		in   string
		want Rate
		str  string
	}{
		{"100/h", Rate{N: 100, Per: time.Hour}, "100/h"},
		{"20/s", Rate{N: 20, Per: time.Second}, "20/s"},
		{" 5/m ", Rate{N: 5, Per: time.Minute}, "5/m"},
		{"1000/d", Rate{N: 1000, Per: 24 * time.Hour}, "1000/d"},
		{"1200/m", Rate{N: 1200, Per: time.Minute}, "1200/m"},
		{"10/30m", Rate{N: 10, Per: 30 * time.Minute}, "10/30m0s"},
		{"20/s burst 5", Rate{N: 20, Per: time.Second, Burst: 5}, "20/s burst 5"},
		{"unlimited", Rate{}, "unlimited"},
		{"Unlimited", Rate{}, "unlimited"},
	}
	for _, c := range cases {
		got, err := ParseRate(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if s := got.String(); s != c.str {
			t.Errorf("%+v.String() = %q, want %q", got, s, c.str)
		}
		if back, err := ParseRate(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q = %+v, %v", c.in, back, err)
		}
	}
	for _, bad := range []string{"", "100", "0/h", "-1/s", "x/s", "10/", "10/w", "10/-1s", "10/0s", "5/s burst 0", "5/s burst x", "1/0.1ns"} {
		if r, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) = %+v, want an error", bad, r)
		}
	}
}

func TestRateText(t *testing.T) {
	var r Rate
	if err := r.UnmarshalText([]byte("1200/m")); err != nil || r != (Rate{N: 1200, Per: time.Minute}) {
		t.Errorf("UnmarshalText = %+v, %v", r, err)
	}
	if b, _ := r.MarshalText(); string(b) != "1200/m" {
		t.Errorf("MarshalText = %q", b)
	}
	if err := r.UnmarshalText([]byte("fast")); err == nil {
		t.Error("UnmarshalText(fast) succeeded")
	}
	if !(Rate{}).Unlimited() || (Rate{N: 1, Per: time.Second}).Unlimited() {
		t.Error("Unlimited wrong")
	}
	if got := (Rate{N: 20, Per: time.Second}).Interval(); got != 50*time.Millisecond {
		t.Errorf("Interval = %v", got)
	}
	if err := (Rate{N: 3}).validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("validate(3 per 0) = %v", err)
	}
}
