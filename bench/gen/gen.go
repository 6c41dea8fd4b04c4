// Package gen is the benchmark's SMTP load generator: N concurrent
// sessions, each sending a number of messages per connection with
// pipelined envelopes (RFC 2920), bodies drawn from a size distribution,
// recipients from weighted domains, and optional X-Job and X-Virtual-MTA
// headers. For every message it records when the final 250 arrived, by
// Message-ID, so that delivery latency can be measured at the far end.
package gen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-mta/sluice/bench/text"
)

// Options configure a run.
type Options struct {
	Addrs      []string                            // servers to inject into, one per connection, round robin
	Source     string                              // local IP to connect from; "" lets the kernel choose
	Messages   int                                 // total messages
	Sessions   int                                 // [16] concurrent connections
	PerSession int                                 // [100] messages per connection before QUIT
	Rcpts      int                                 // [1] recipients per message
	Sizes      []Weighted[int]                     // body sizes [5 KiB]
	Domains    []Weighted[string]                  // recipient domains [bench.test]
	From       string                              // [bench@sender.test]
	Job        string                              // X-Job header, if set
	VMTA       string                              // X-Virtual-MTA header, if set
	Rate       float64                             // messages per second, 0 for as fast as possible
	RunID      string                              // Message-ID prefix; [random]
	Timeout    time.Duration                       // [10m] for the whole run
	Dial       func(addr string) (net.Conn, error) // overrides the dialer (tests)
}

// Result is what a run did.
type Result struct {
	Start, End time.Time
	Sent       int         // messages accepted with 250
	Rcpts      int         // recipients accepted
	Failed     int         // messages not accepted
	Errors     []string    // the first few failures
	accepted   []time.Time // by message index; zero: not accepted
	runID      string
}

// Rate returns accepted messages per second.
func (r *Result) Rate() float64 {
	d := r.End.Sub(r.Start).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(r.Sent) / d
}

// Accepted calls fn for every accepted message with its Message-ID (as
// written in the header, with angle brackets) and the time of its 250.
func (r *Result) Accepted(fn func(mid string, at time.Time)) {
	for i, t := range r.accepted {
		if !t.IsZero() {
			fn(MessageID(r.runID, i), t)
		}
	}
}

// MessageID returns the Message-ID of message i of a run.
func MessageID(runID string, i int) string {
	return "<" + runID + "." + strconv.Itoa(i) + "@gen.bench.test>"
}

type run struct {
	o       Options
	next    atomic.Int64
	res     *Result
	mu      sync.Mutex
	sizes   picker[int]
	domains picker[string]
	filler  []byte
	errs    atomic.Int64
}

const maxErrors = 1000 // a run gives up after this many failed messages

// Run injects o.Messages messages and returns when all are sent, the
// context ends, or the timeout passes.
func Run(ctx context.Context, o Options) (*Result, error) {
	if len(o.Addrs) == 0 || o.Messages <= 0 {
		return nil, errors.New("gen: no address or no messages")
	}
	if o.Sessions <= 0 {
		o.Sessions = 16
	}
	if o.PerSession <= 0 {
		o.PerSession = 100
	}
	if o.Rcpts <= 0 {
		o.Rcpts = 1
	}
	if o.Sizes == nil {
		o.Sizes = []Weighted[int]{{5 << 10, 1}}
	}
	if o.Domains == nil {
		o.Domains = []Weighted[string]{{"bench.test", 1}}
	}
	if o.From == "" {
		o.From = "bench@sender.test"
	}
	if o.RunID == "" {
		o.RunID = strconv.FormatUint(rand.Uint64()>>20, 36)
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		if o.Source != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.Source)}
		}
		o.Dial = func(a string) (net.Conn, error) { return d.Dial("tcp", a) }
	}
	maxSize := 0
	for _, s := range o.Sizes {
		maxSize = max(maxSize, s.Value)
	}
	r := &run{o: o, sizes: newPicker(o.Sizes), domains: newPicker(o.Domains), filler: filler(maxSize),
		res: &Result{accepted: make([]time.Time, o.Messages), runID: o.RunID}}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	r.res.Start = time.Now()
	var wg sync.WaitGroup
	for i := range min(o.Sessions, o.Messages) {
		wg.Add(1)
		go func() { // owned by Run: ends when messages run out or ctx ends
			defer wg.Done()
			r.session(ctx, i)
		}()
	}
	wg.Wait()
	r.res.End = time.Now()
	for _, t := range r.res.accepted {
		if !t.IsZero() {
			r.res.Sent++
		}
	}
	r.res.Failed = o.Messages - r.res.Sent
	if err := ctx.Err(); err != nil && r.res.Failed > 0 {
		return r.res, fmt.Errorf("gen: %d of %d messages not sent: %w", r.res.Failed, o.Messages, err)
	}
	if r.errs.Load() >= maxErrors {
		return r.res, fmt.Errorf("gen: gave up after %d errors; first: %v", maxErrors, r.res.Errors)
	}
	return r.res, nil
}

func (r *run) fail(err error) {
	if r.errs.Add(1) <= 5 {
		r.mu.Lock()
		r.res.Errors = append(r.res.Errors, err.Error())
		r.mu.Unlock()
	}
}

// session sends messages over successive connections until none are left.
func (r *run) session(ctx context.Context, n int) {
	rng := rand.New(rand.NewPCG(uint64(n), 0x6e6))
	addr := r.o.Addrs[n%len(r.o.Addrs)]
	for ctx.Err() == nil && r.errs.Load() < maxErrors {
		if int(r.next.Load()) >= r.o.Messages {
			return
		}
		c, err := r.o.Dial(addr)
		if err != nil {
			r.fail(err)
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		err = r.conn(ctx, c, rng)
		stop()
		c.Close()
		if errors.Is(err, errDone) {
			return
		}
		if err != nil {
			r.fail(err)
		}
	}
}

var errDone = errors.New("done")

type client struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// readReply reads one possibly multi-line reply and returns its code and
// last line.
func (cl *client) readReply() (int, string, error) {
	for {
		cl.c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		line, err := cl.r.ReadString('\n')
		if err != nil {
			return 0, "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return 0, line, fmt.Errorf("bad reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return 0, line, fmt.Errorf("bad reply %q", line)
		}
		if len(line) == 3 || line[3] != '-' {
			return code, line, nil
		}
	}
}

func (cl *client) expect(want int) error {
	code, line, err := cl.readReply()
	if err != nil {
		return err
	}
	if code/100 != want/100 {
		return fmt.Errorf("want %d, got %q", want, line)
	}
	return nil
}

// conn runs one connection: greeting, EHLO, up to PerSession messages.
// errDone means no messages are left.
func (r *run) conn(ctx context.Context, c net.Conn, rng *rand.Rand) error {
	cl := &client{c: c, r: bufio.NewReaderSize(c, 16<<10), w: bufio.NewWriterSize(c, 64<<10)}
	if err := cl.expect(220); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	cl.w.WriteString("EHLO gen.bench.test\r\n")
	if err := cl.w.Flush(); err != nil {
		return err
	}
	if err := cl.expect(250); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	for k := 0; k < r.o.PerSession; k++ {
		i := int(r.next.Add(1) - 1)
		if i >= r.o.Messages {
			cl.w.WriteString("QUIT\r\n")
			cl.w.Flush()
			return errDone
		}
		if r.o.Rate > 0 {
			slot := r.res.Start.Add(time.Duration(float64(i) / r.o.Rate * float64(time.Second)))
			sleepCtx(ctx, time.Until(slot))
		}
		if err := r.send(cl, rng, i); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	cl.w.WriteString("QUIT\r\n")
	cl.w.Flush()
	cl.readReply()
	return nil
}

// send sends message i with a pipelined MAIL, RCPTs and DATA.
func (r *run) send(cl *client, rng *rand.Rand, i int) error {
	size := r.sizes.pick(rng)
	rcpts := make([]string, r.o.Rcpts)
	for j := range rcpts {
		rcpts[j] = "u" + strconv.Itoa(i) + "." + strconv.Itoa(j) + "@" + r.domains.pick(rng)
	}
	w := cl.w
	w.WriteString("MAIL FROM:<" + r.o.From + ">\r\n")
	for _, rc := range rcpts {
		w.WriteString("RCPT TO:<" + rc + ">\r\n")
	}
	w.WriteString("DATA\r\n")
	if err := w.Flush(); err != nil {
		return err
	}
	if err := cl.expect(250); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	ok := 0
	for range rcpts {
		code, _, err := cl.readReply()
		if err != nil {
			return err
		}
		if code/100 == 2 {
			ok++
		}
	}
	code, line, err := cl.readReply()
	if err != nil {
		return err
	}
	if code != 354 {
		return fmt.Errorf("DATA: %q (%d of %d recipients accepted)", line, ok, len(rcpts))
	}
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: bench %d\r\nMessage-ID: %s\r\nDate: %s\r\n",
		r.o.From, rcpts[0], i, MessageID(r.o.RunID, i), time.Now().Format(time.RFC1123Z))
	if r.o.Job != "" {
		w.WriteString("X-Job: " + r.o.Job + "\r\n")
	}
	if r.o.VMTA != "" {
		w.WriteString("X-Virtual-MTA: " + r.o.VMTA + "\r\n")
	}
	w.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	w.Write(r.filler[:fillerLen(r.filler, size)])
	w.WriteString(".\r\n")
	if err := w.Flush(); err != nil {
		return err
	}
	code, line, err = cl.readReply()
	if err != nil {
		return err
	}
	if code != 250 {
		return fmt.Errorf("end of DATA: %q", line)
	}
	r.res.accepted[i] = time.Now()
	r.mu.Lock()
	r.res.Rcpts += ok
	r.mu.Unlock()
	return nil
}

const lineLen = 78 // 76 characters and CRLF

// filler returns body lines of exactly lineLen bytes totalling at least n
// bytes: prose (bench/text), which compresses as real mail text does.
func filler(n int) []byte {
	lines := n/lineLen + 1
	words := strings.ReplaceAll(text.Prose(rand.New(rand.NewPCG(7, 7)), lines*lineLen), "\r\n", " ")
	b := make([]byte, 0, lines*lineLen)
	for i := range lines {
		l := []byte(words[i*(lineLen-2) : (i+1)*(lineLen-2)])
		if l[0] == '.' {
			l[0] = ' ' // no dot-stuffing needed (RFC 5321 §4.5.2)
		}
		b = append(b, l...)
		b = append(b, '\r', '\n')
	}
	return b
}

// fillerLen returns a whole number of lines close to size bytes.
func fillerLen(f []byte, size int) int {
	n := (size / lineLen) * lineLen
	return min(n, len(f))
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
