package campaign

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-mta/sluice/engine/inject"
)

// Options describe one run of `sluice inject`.
type Options struct {
	Template   []byte    // an RFC 5322 message with text/template fields
	Recipients io.Reader // CSV with a header row
	Job        string
	Sender     string // envelope sender; "" takes the template's From
	VirtualMTA string // X-Virtual-MTA over SMTP, virtual_mta over HTTP
	Via        string // "smtp" [default] or "http"
	Server     string // host:port of the SMTP listener or the admin API
	Token      string // bearer token for HTTP
	Sessions   int    // concurrent sessions or requests [8]
	Rate       float64
	Batch      int    // recipients per HTTP request [1000]
	Checkpoint string // file of accepted lines; "" keeps none
	Limit      int    // stop after this many rows sent (0: all)
	Helo       string // EHLO name ["localhost"]
	Progress   io.Writer
	TTY        bool // draw a progress bar instead of lines
	HTTP       *http.Client
}

// Summary is the outcome of a run.
type Summary struct {
	Rows        int        // data rows in the CSV, bad ones included
	Skipped     int        // accepted by an earlier run (checkpoint)
	Accepted    int        // accepted by this run
	Rejected    []RowError // bad rows and refused recipients, by line
	NotSent     int        // rows left when the run stopped early
	Took        time.Duration
	Interrupted bool
}

type result struct {
	row    *Row
	ok     bool
	reason string
}

// Run injects every row not in the checkpoint. Its error is fatal: an
// unparseable template, a CSV without an email column, a checkpoint that
// cannot be written, or a server that could not be reached before anything
// was accepted. The summary is returned with the error when it exists.
func Run(ctx context.Context, o Options) (*Summary, error) {
	t0 := time.Now()
	if o.Sessions <= 0 {
		o.Sessions = 8
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Helo == "" {
		o.Helo = "localhost"
	}
	if o.Via == "" {
		o.Via = "smtp"
	}
	if o.Via != "smtp" && o.Via != "http" {
		return nil, fmt.Errorf("--via %q: want smtp or http", o.Via)
	}
	tmpl, rerr := inject.Compile(&inject.Content{Raw: string(o.Template)})
	if rerr != nil {
		return nil, fmt.Errorf("template line %d: %s", rerr.Line, rerr.Msg)
	}
	rows, bad, err := ReadRows(o.Recipients)
	if err != nil {
		return nil, err
	}
	sum := &Summary{Rows: len(rows) + len(bad), Rejected: bad}
	var cp *Checkpoint
	if o.Checkpoint != "" {
		if cp, err = OpenCheckpoint(o.Checkpoint, o.Job); err != nil {
			return nil, err
		}
		defer cp.Close()
	}
	var todo []*Row
	for i := range rows {
		if cp != nil && cp.Done(rows[i].Line) {
			sum.Skipped++
			continue
		}
		todo = append(todo, &rows[i])
	}
	if o.Limit > 0 && len(todo) > o.Limit {
		sum.NotSent = len(todo) - o.Limit
		todo = todo[:o.Limit]
	}
	if len(todo) > 0 && o.Sender == "" {
		if o.Sender, err = templateSender(tmpl, todo[0]); err != nil {
			return nil, err
		}
	}

	work := make(chan *Row)
	results := make(chan result, 256)
	var unreachable atomic.Pointer[error]
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pace := newPacer(o.Rate)
	var wg sync.WaitGroup
	for range o.Sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if o.Via == "http" {
				err = httpWorker(ctx, &o, pace, work, results)
			} else {
				err = smtpWorker(ctx, &o, tmpl, pace, work, results)
			}
			if err != nil {
				unreachable.CompareAndSwap(nil, &err)
				cancel() // the server is gone: stop feeding the others
			}
		}()
	}
	go func() {
		defer close(work)
		for _, r := range todo {
			select {
			case work <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	prog := newProgress(o.Progress, o.TTY, len(todo))
	var cpErr error
	handled := 0
	for res := range results {
		batch := []result{res}
	drain:
		for {
			select {
			case r, ok := <-results:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		var lines []int
		for _, r := range batch {
			handled++
			if r.ok {
				sum.Accepted++
				lines = append(lines, r.row.Line)
			} else {
				sum.Rejected = append(sum.Rejected, RowError{Line: r.row.Line, Email: r.row.Email, Reason: r.reason})
			}
		}
		if cp != nil && cpErr == nil {
			if cpErr = cp.Record(lines); cpErr != nil {
				cancel() // without a checkpoint a resume would send twice
			}
		}
		prog.update(handled, sum.Accepted)
	}
	prog.done(handled, sum.Accepted)
	sum.NotSent += len(todo) - handled
	sum.Took = time.Since(t0)
	sort.SliceStable(sum.Rejected, func(i, j int) bool { return sum.Rejected[i].Line < sum.Rejected[j].Line })
	if cpErr != nil {
		return sum, fmt.Errorf("checkpoint: %w", cpErr)
	}
	if e := unreachable.Load(); e != nil {
		return sum, *e
	}
	if ctx.Err() != nil && handled < len(todo) {
		sum.Interrupted = true
	}
	return sum, nil
}

// templateSender renders the template for a row and takes its From
// address as the envelope sender.
func templateSender(t *inject.Template, r *Row) (string, error) {
	msg, err := render(t, r, "")
	if err != nil {
		return "", fmt.Errorf("line %d: %v (set --sender to choose the envelope sender)", r.Line, err)
	}
	m, err := mail.ReadMessage(strings.NewReader(string(msg)))
	if err == nil {
		var a *mail.Address
		if a, err = mail.ParseAddress(m.Header.Get("From")); err == nil {
			return a.Address, nil
		}
	}
	return "", fmt.Errorf("no envelope sender: the template's From is unusable (%v); set --sender", err)
}

// render builds row r's message; extra fields go first.
func render(t *inject.Template, r *Row, extra string) ([]byte, error) {
	data := make(map[string]any, len(r.Values))
	for k, v := range r.Values {
		data[k] = v
	}
	var id [12]byte
	rand.Read(id[:])
	var bufs inject.Buffers
	out, err := t.Render(data, &inject.Recipient{Email: r.Email}, inject.Meta{
		Received:  extra,
		MessageID: hex.EncodeToString(id[:]) + "@sluice-inject",
		Date:      time.Now(),
	}, &bufs)
	if err != nil {
		return nil, fmt.Errorf("template: %s", strings.TrimPrefix(err.Error(), "template: "))
	}
	return out.Body, nil
}

// smtpWorker sends rows over one session, reconnecting once after a broken
// session. It returns an error only when the server cannot be reached.
func smtpWorker(ctx context.Context, o *Options, t *inject.Template, pace *pacer, work <-chan *Row, out chan<- result) error {
	extra := ""
	if o.Job != "" {
		extra += "X-Job: " + o.Job + "\r\n"
	}
	if o.VirtualMTA != "" {
		extra += "X-Virtual-MTA: " + o.VirtualMTA + "\r\n"
	}
	var c *smtpConn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for r := range work {
		if err := pace.wait(ctx, 1); err != nil {
			return nil
		}
		msg, err := render(t, r, extra)
		if err != nil {
			out <- result{row: r, reason: err.Error()}
			continue
		}
		var rep smtpReply
		for attempt := 0; ; attempt++ {
			if c == nil {
				if c, err = dialSMTP(ctx, o.Server, o.Helo); err != nil {
					out <- result{row: r, reason: err.Error()}
					return err
				}
			}
			if rep, err = c.send(o.Sender, r.Email, msg); err == nil {
				break
			}
			c.c.Close()
			c = nil
			if attempt == 1 {
				out <- result{row: r, reason: "session failed: " + err.Error()}
				break
			}
		}
		if err != nil {
			continue
		}
		if rep.Code/100 == 2 {
			out <- result{row: r, ok: true}
		} else {
			out <- result{row: r, reason: rep.String()}
		}
	}
	return nil
}
