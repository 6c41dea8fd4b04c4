package campaign

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ParseRate reads "500/s", "30000/m", "1000000/h" or a bare number (per
// second) as messages per second; "" and "0" mean unlimited.
func ParseRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	per := time.Second
	if ok {
		switch unit {
		case "s":
		case "m":
			per = time.Minute
		case "h":
			per = time.Hour
		default:
			return 0, fmt.Errorf("rate %q: unit must be s, m or h", s)
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("rate %q: want N/s, N/m or N/h", s)
	}
	return n / per.Seconds(), nil
}

// pacer spaces sends to a rate shared by all sessions; nil-rate is
// unlimited.
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func newPacer(perSecond float64) *pacer {
	if perSecond <= 0 {
		return &pacer{}
	}
	return &pacer{interval: time.Duration(float64(time.Second) / perSecond)}
}

// wait reserves n sends and sleeps until the first of them is due.
func (p *pacer) wait(ctx context.Context, n int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.interval == 0 {
		return nil
	}
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(time.Duration(n) * p.interval)
	p.mu.Unlock()
	if d := time.Until(at); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// progress draws a bar on a terminal (count, rate, ETA) or prints a plain
// line every few seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	total int
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, tty bool, total int) *progress {
	now := time.Now()
	return &progress{w: w, tty: tty, total: total, start: now, last: now}
}

func (p *progress) update(done, accepted int) {
	if p.w == nil {
		return
	}
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if time.Since(p.last) < every {
		return
	}
	p.last = time.Now()
	p.draw(done, accepted)
}

func (p *progress) done(done, accepted int) {
	if p.w == nil {
		return
	}
	p.draw(done, accepted)
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) draw(done, accepted int) {
	el := time.Since(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(p.total-done)/rate) * time.Second).Round(time.Second).String()
	}
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(done) / float64(p.total)
	}
	if !p.tty {
		fmt.Fprintf(p.w, "inject: %d/%d rows (%.0f%%), %d accepted, %.0f/s, eta %s\n", done, p.total, pct, accepted, rate, eta)
		return
	}
	const width = 30
	fill := int(pct / 100 * width)
	bar := strings.Repeat("#", fill) + strings.Repeat("-", width-fill)
	fmt.Fprintf(p.w, "\r[%s] %d/%d %3.0f%% %6.0f/s eta %-8s", bar, done, p.total, pct, rate, eta)
}
