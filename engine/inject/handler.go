package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/reply"
	"github.com/sluice-mta/sluice/engine/spool"
)

// DefaultMaxBody bounds a request body: 10,000 recipients with their
// values, and attachments, fit well within it.
const DefaultMaxBody = 64 << 20

// putTimeout bounds the wait for the spool's synced commits.
const putTimeout = 60 * time.Second

// Submitter makes messages durable and queues them (engine/submit.Pipeline).
type Submitter interface {
	SubmitBatch(ctx context.Context, ms []*spool.Message, bodies [][]byte) (refused []error, err error)
}

// VMTAs tells whether a VMTA or pool name is configured (pools.Registry).
type VMTAs interface {
	Known(name string) bool
}

// Suppressor tells whether mail to rcpt is suppressed (the fbl
// suppression list); scope "" is the global list.
type Suppressor interface {
	Suppressed(ctx context.Context, rcpt, scope string) (bool, error)
}

// Options configure a Handler.
type Options struct {
	Hostname   string        // in Received and Message-ID
	Submit     Submitter     // required
	NewID      func() string // spool.Store.NewID; required
	VMTAs      VMTAs         // nil: every name is accepted
	Suppressor Suppressor    // nil: nothing is suppressed
	MaxBody    int64         // [DefaultMaxBody]
	MaxMessage int           // largest rendered message [MaxMessage]
	Log        *zap.Logger
	Now        func() time.Time // nil: time.Now
}

// maxRendered bounds the bytes one request may render: every recipient's
// message is held until the request's synced commit.
const maxRendered = 1 << 30

// maxPooled is the largest message buffer kept for reuse.
const maxPooled = 1 << 20

// Handler serves POST /api/v1/inject. Authentication is the mounting
// server's business (engine/admin checks the bearer token).
type Handler struct {
	opts Options
	// Message buffers, reused once a request's commit has copied them:
	// 10,000 fresh 10 KB buffers per request cost more than rendering.
	pool sync.Pool
}

// NewHandler returns a Handler for o.
func NewHandler(o Options) *Handler {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{opts: o, pool: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
}

// Reply is the JSON answer to an accepted request.
type Reply struct {
	Job      string      `json:"job"`
	Accepted int         `json:"accepted"`
	Rejected []Rejection `json:"rejected"`
}

// Rejection is one recipient refused; Index is its position in the
// request's recipients.
type Rejection struct {
	Email  string `json:"email"`
	Index  int    `json:"index"`
	Reason string `json:"reason"`
}

// ErrorReply is the JSON answer to a request refused as a whole.
type ErrorReply struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
	Line  int    `json:"line,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *RequestError) {
	writeJSON(w, e.Status, ErrorReply{Error: e.Error(), Field: e.Field, Line: e.Line})
}

// ServeHTTP decodes, renders and spools one request. The 200 is written
// only after the spool's synced commit of every accepted message.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, &RequestError{Status: 405, Msg: "use POST"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, &RequestError{Status: 413, Msg: fmt.Sprintf("request body over %d bytes", h.opts.MaxBody)})
			return
		}
		writeError(w, badRequest("", "reading the body: %v", err))
		return
	}
	req, err := Decode(body)
	if err != nil {
		writeError(w, err.(*RequestError))
		return
	}
	if h.opts.VMTAs != nil && !h.opts.VMTAs.Known(req.VirtualMTA) {
		writeError(w, badRequest("virtual_mta", "unknown virtual MTA or pool %q", req.VirtualMTA))
		return
	}
	tmpl, rerr := Compile(&req.Content)
	if rerr != nil {
		writeError(w, rerr)
		return
	}
	if h.opts.MaxMessage > 0 {
		tmpl.max = h.opts.MaxMessage
	}
	if est := int64(len(req.Recipients)) * int64(tmpl.size+1024); est > maxRendered {
		writeError(w, &RequestError{Status: 413, Field: "recipients",
			Msg: fmt.Sprintf("the messages would take about %d MB; send fewer recipients per request", est>>20)})
		return
	}
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	ctx, cancel := context.WithTimeout(r.Context(), putTimeout)
	defer cancel()
	t0 := time.Now()
	rep, err := h.inject(ctx, req, tmpl, ip, r.TLS != nil)
	if err != nil {
		h.opts.Log.Error("inject spool failed", zap.String("job_id", req.Job), zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, ErrorReply{Error: "local error in processing, nothing was queued; try again later"})
		return
	}
	h.opts.Log.Info("inject request", zap.String("job_id", req.Job), zap.Int("accepted", rep.Accepted),
		zap.Int("rejected", len(rep.Rejected)), zap.Duration("took", time.Since(t0)))
	writeJSON(w, http.StatusOK, rep)
}

// inject renders every recipient's message and submits the lot.
func (h *Handler) inject(ctx context.Context, req *Request, tmpl *Template, ip string, tls bool) (*Reply, error) {
	n := len(req.Recipients)
	reasons := make([]string, n)
	seen := make(map[string]struct{}, n)
	for i := range req.Recipients {
		rc := &req.Recipients[i]
		rc.Email = strings.TrimSpace(rc.Email)
		if err := CheckAddress(rc.Email); err != nil {
			reasons[i] = "invalid address: " + err.Error()
			continue
		}
		key := strings.ToLower(rc.Email)
		if _, dup := seen[key]; dup {
			reasons[i] = "duplicate recipient in this request"
			continue
		}
		seen[key] = struct{}{}
	}

	now := h.opts.Now()
	with := "HTTP"
	if tls {
		with = "HTTPS"
	}
	msgs := make([]*spool.Message, n)
	bodies := make([][]byte, n)
	outs := make([]*bytes.Buffer, n)
	defer func() {
		for _, b := range outs {
			if b != nil && b.Cap() <= maxPooled {
				h.pool.Put(b)
			}
		}
	}()
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var bufs Buffers
			for i := w; i < n; i += workers {
				if reasons[i] != "" {
					continue
				}
				outs[i] = h.pool.Get().(*bytes.Buffer)
				bufs.Out = outs[i]
				msgs[i], bodies[i], reasons[i] = h.build(ctx, req, tmpl, i, ip, with, now, &bufs)
			}
		}()
	}
	wg.Wait()

	var ms []*spool.Message
	var bs [][]byte
	var at []int
	for i := range msgs {
		if reasons[i] == "" {
			ms = append(ms, msgs[i])
			bs = append(bs, bodies[i])
			at = append(at, i)
		}
	}
	if len(ms) > 0 {
		refused, err := h.opts.Submit.SubmitBatch(ctx, ms, bs)
		if err != nil {
			return nil, err
		}
		for k, e := range refused {
			if e != nil {
				reasons[at[k]] = refusal(e)
			}
		}
	}
	rep := &Reply{Job: req.Job, Rejected: []Rejection{}}
	for i, why := range reasons {
		if why == "" {
			rep.Accepted++
		} else {
			rep.Rejected = append(rep.Rejected, Rejection{Email: req.Recipients[i].Email, Index: i, Reason: why})
		}
	}
	return rep, nil
}

// build checks suppression and renders recipient i; a non-empty reason
// refuses it.
func (h *Handler) build(ctx context.Context, req *Request, tmpl *Template, i int, ip, with string, now time.Time, bufs *Buffers) (*spool.Message, []byte, string) {
	rc := &req.Recipients[i]
	if s := h.opts.Suppressor; s != nil {
		sup, err := s.Suppressed(ctx, rc.Email, "")
		if err != nil {
			return nil, nil, "temporary: suppression list unavailable, try again later"
		}
		if sup {
			return nil, nil, "suppressed"
		}
	}
	id := h.opts.NewID()
	// RFC 5321 §4.4: the trace field of the hop that took the message in.
	received := fmt.Sprintf("Received: from [%s]\r\n\tby %s (Sluice) with %s id %s\r\n\tfor <%s>;\r\n\t%s\r\n",
		ip, h.opts.Hostname, with, id, rc.Email, now.Format(time.RFC1123Z))
	out, err := tmpl.Render(Data(req.Substitutions, rc), rc, Meta{
		Received:  received,
		MessageID: id + "@" + h.opts.Hostname,
		Date:      now,
	}, bufs)
	if err != nil {
		return nil, nil, "template: " + templateReason(err)
	}
	env := spool.Envelope{
		From:     req.EnvelopeSender,
		Received: now,
		SourceIP: ip,
		JobID:    req.Job,
		VMTA:     req.VirtualMTA,
		SMTPUTF8: !isASCII(rc.Email) || !isASCII(req.EnvelopeSender), // RFC 6531
		Body8Bit: out.Body8Bit,
	}
	m := &spool.Message{ID: id, Env: env, Rcpts: []spool.Rcpt{{Addr: rc.Email, State: spool.Pending}}}
	return m, out.Body, ""
}

// templateReason shortens a template execution error for the reply.
func templateReason(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "template: ")
	return s
}

// refusal is the reason given for a message a transform refused.
func refusal(err error) string {
	var r *reply.Error
	if errors.As(err, &r) {
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	return "refused: local error in processing"
}
