// Package sink is the benchmark's SMTP receiver: one server on many
// loopback addresses, with a reply mix per recipient domain, a latency per
// round trip, and faults (tarpit, drop after DATA, garbage replies). For
// every accepted message it records the arrival time, the client's source
// IP, the connection id, the recipient domain, the Message-ID and the size,
// keeps counts, and can write one JSON line per message.
package sink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Sink.
type Options struct {
	Addrs       []string      // "ip:port" listeners, all served alike
	Rules       Rules         // reply mix per domain; nil: accept everything
	Latency     time.Duration // added before each flushed reply (one round trip)
	TarpitDelay time.Duration // [30s] wait of a Tarpit rule
	LogPath     string        // JSONL file of accepted messages; "" for none
	MaxSize     int64         // [64 MiB] larger messages are refused with 552
	Seed        uint64        // of the reply-mix rolls
	Hold        bool          // start holding: connections get no greeting until SetHold(false)
}

// Entry is one accepted (or dropped) message, as written to the JSONL log.
type Entry struct {
	Time   time.Time `json:"t"`
	Src    string    `json:"src"`
	Conn   uint64    `json:"conn"`
	Domain string    `json:"domain"`
	Rcpts  int       `json:"rcpts"`
	MID    string    `json:"mid"`
	Size   int64     `json:"size"`
	Result string    `json:"result"` // "250", "drop", "garbage"
}

// Stats are the sink's counters.
type Stats struct {
	Conns    int64            `json:"conns"`
	Messages int64            `json:"messages"` // accepted with 250
	Rcpts    int64            `json:"rcpts"`    // accepted recipients of those
	Bytes    int64            `json:"bytes"`
	Replies  map[string]int64 `json:"replies"` // rule-driven replies and faults by code or kind
}

// Sink is a running receiver.
type Sink struct {
	opts  Options
	lns   []net.Listener
	wg    sync.WaitGroup
	stop  chan struct{}
	rngMu sync.Mutex
	rng   *rand.Rand

	connID, conns, msgs, rcpts, bytes atomic.Int64
	hold                              atomic.Bool

	mu       sync.Mutex
	replies  map[string]int64
	arrivals map[string]time.Time // Message-ID → last arrival
	dups     int64                // accepted copies of a Message-ID already accepted
	open     map[net.Conn]struct{}
	log      *bufio.Writer
	logFile  *os.File
}

// Start listens on every address and serves until Close.
func Start(opts Options) (*Sink, error) {
	if opts.TarpitDelay == 0 {
		opts.TarpitDelay = 30 * time.Second
	}
	if opts.MaxSize == 0 {
		opts.MaxSize = 64 << 20
	}
	s := &Sink{
		opts:     opts,
		stop:     make(chan struct{}),
		rng:      rand.New(rand.NewPCG(opts.Seed, 0x5eed)),
		replies:  map[string]int64{},
		arrivals: map[string]time.Time{},
		open:     map[net.Conn]struct{}{},
	}
	s.hold.Store(opts.Hold)
	if opts.LogPath != "" {
		f, err := os.Create(opts.LogPath)
		if err != nil {
			return nil, err
		}
		s.logFile, s.log = f, bufio.NewWriterSize(f, 256<<10)
	}
	for _, a := range opts.Addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sink: %w", err)
		}
		s.lns = append(s.lns, ln)
	}
	for _, ln := range s.lns {
		s.wg.Add(1)
		go s.accept(ln) // owned by s: ends when Close closes ln
	}
	return s, nil
}

// Close stops listening, cuts open connections, waits for every goroutine
// and flushes the log.
func (s *Sink) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	for _, ln := range s.lns {
		ln.Close()
	}
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.log != nil {
		s.log.Flush()
		return s.logFile.Close()
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Sink) Stats() Stats {
	st := Stats{Conns: s.conns.Load(), Messages: s.msgs.Load(), Rcpts: s.rcpts.Load(), Bytes: s.bytes.Load(), Replies: map[string]int64{}}
	s.mu.Lock()
	for k, v := range s.replies {
		st.Replies[k] = v
	}
	s.mu.Unlock()
	return st
}

// SetHold makes new and waiting connections wait before the greeting (a
// destination that accepts TCP but not mail), or releases them.
func (s *Sink) SetHold(on bool) { s.hold.Store(on) }

// Addrs returns the listening addresses (with the ports chosen for ":0").
func (s *Sink) Addrs() []string {
	out := make([]string, len(s.lns))
	for i, ln := range s.lns {
		out[i] = ln.Addr().String()
	}
	return out
}

// Messages returns the number of messages accepted so far.
func (s *Sink) Messages() int64 { return s.msgs.Load() }

// Arrivals returns, per Message-ID, when its last copy was accepted.
func (s *Sink) Arrivals() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]time.Time, len(s.arrivals))
	for k, v := range s.arrivals {
		m[k] = v
	}
	return m
}

// Duplicates returns how many accepted messages repeated a Message-ID
// accepted before (since the last Reset): a message delivered three times
// counts 2.
func (s *Sink) Duplicates() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dups
}

// FirstArrivalAfter returns the earliest arrival at or after t, if any.
func (s *Sink) FirstArrivalAfter(t time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first time.Time
	for _, a := range s.arrivals {
		if !a.Before(t) && (first.IsZero() || a.Before(first)) {
			first = a
		}
	}
	return first, !first.IsZero()
}

// Reset zeroes the counters and forgets arrivals.
func (s *Sink) Reset() {
	s.conns.Store(0)
	s.msgs.Store(0)
	s.rcpts.Store(0)
	s.bytes.Store(0)
	s.mu.Lock()
	s.replies = map[string]int64{}
	s.arrivals = map[string]time.Time{}
	s.dups = 0
	s.mu.Unlock()
}

// String renders the counts for people.
func (st Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sink: %d conns, %d messages, %d rcpts, %d bytes", st.Conns, st.Messages, st.Rcpts, st.Bytes)
	keys := make([]string, 0, len(st.Replies))
	for k := range st.Replies {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, ", %s×%d", k, st.Replies[k])
	}
	return b.String()
}

func (s *Sink) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		s.mu.Lock()
		select {
		case <-s.stop:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.open[c] = struct{}{}
		s.mu.Unlock()
		s.conns.Add(1)
		s.wg.Add(1)
		go func() { // owned by s: Close closes c
			defer s.wg.Done()
			s.serve(c, uint64(s.connID.Add(1)))
			s.mu.Lock()
			delete(s.open, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *Sink) count(key string) {
	s.mu.Lock()
	s.replies[key]++
	s.mu.Unlock()
}

func (s *Sink) roll(domain string, perRcpt bool) *Rule {
	if s.opts.Rules == nil {
		return nil
	}
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.opts.Rules.pick(s.rng, domain, perRcpt)
}

func (s *Sink) record(e Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Result == "250" && e.MID != "" {
		if _, seen := s.arrivals[e.MID]; seen {
			s.dups++
		}
		s.arrivals[e.MID] = e.Time
	}
	if s.log != nil {
		line, _ := json.Marshal(e)
		s.log.Write(line)
		s.log.WriteByte('\n')
	}
}

// domainOf returns the lower-case domain of "<user@domain>" or "user@domain".
func domainOf(arg string) string {
	arg = strings.TrimSpace(arg)
	if i := strings.IndexByte(arg, '>'); i >= 0 {
		arg = arg[:i]
	}
	if i := strings.LastIndexByte(arg, '@'); i >= 0 {
		return strings.ToLower(arg[i+1:])
	}
	return ""
}

// messageID extracts the Message-ID header value from a header line.
func messageID(line []byte) (string, bool) {
	const h = "message-id:"
	if len(line) < len(h) || !bytes.EqualFold(line[:len(h)], []byte(h)) {
		return "", false
	}
	return string(bytes.TrimSpace(line[len(h):])), true
}
