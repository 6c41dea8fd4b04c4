package gen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Weighted is a value with a relative weight.
type Weighted[T any] struct {
	Value  T
	Weight float64
}

// ParseDomains parses "a.test:5,b.test:1" (a missing weight is 1).
func ParseDomains(s string) ([]Weighted[string], error) {
	var out []Weighted[string]
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, err := splitWeight(part)
		if err != nil {
			return nil, fmt.Errorf("domains %q: %w", s, err)
		}
		out = append(out, Weighted[string]{strings.ToLower(name), w})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("domains %q: none", s)
	}
	return out, nil
}

// ParseSizes parses a body size distribution, "5k" or "1k:60,5k:30,100k:10".
func ParseSizes(s string) ([]Weighted[int], error) {
	var out []Weighted[int]
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		v, w, err := splitWeight(part)
		if err != nil {
			return nil, fmt.Errorf("sizes %q: %w", s, err)
		}
		n, err := ParseSize(v)
		if err != nil {
			return nil, err
		}
		out = append(out, Weighted[int]{n, w})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sizes %q: none", s)
	}
	return out, nil
}

// ParseSize parses "512", "5k", "100K" or "2M" (powers of 1024).
func ParseSize(s string) (int, error) {
	mult := 1
	t := strings.ToLower(strings.TrimSpace(s))
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "m"):
		mult, t = 1<<20, t[:len(t)-1]
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 || n > 64<<20/mult {
		return 0, fmt.Errorf("size %q: want a number with an optional k or m", s)
	}
	return n * mult, nil
}

func splitWeight(part string) (string, float64, error) {
	v, ws, ok := strings.Cut(part, ":")
	if !ok {
		return v, 1, nil
	}
	w, err := strconv.ParseFloat(ws, 64)
	if err != nil || w < 0 {
		return "", 0, fmt.Errorf("bad weight %q", ws)
	}
	return v, w, nil
}

// picker draws values by weight.
type picker[T any] struct {
	vals []T
	cum  []float64
}

func newPicker[T any](ws []Weighted[T]) picker[T] {
	p := picker[T]{}
	acc := 0.0
	for _, w := range ws {
		acc += w.Weight
		p.vals = append(p.vals, w.Value)
		p.cum = append(p.cum, acc)
	}
	return p
}

func (p picker[T]) pick(rng *rand.Rand) T {
	if len(p.vals) == 1 {
		return p.vals[0]
	}
	x := rng.Float64() * p.cum[len(p.cum)-1]
	for i, c := range p.cum {
		if x < c {
			return p.vals[i]
		}
	}
	return p.vals[len(p.vals)-1]
}
