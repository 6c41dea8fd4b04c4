package campaign

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-mta/sluice/engine/inject"
)

// httpRetries is how often a batch answered 503 (spool trouble: nothing
// was queued) is tried again.
const httpRetries = 3

// httpWorker sends batches of rows to POST /api/v1/inject, the template
// as the raw content and each row's columns as its substitutions.
func httpWorker(ctx context.Context, o *Options, pace *pacer, work <-chan *Row, out chan<- result) error {
	cl := o.HTTP
	if cl == nil {
		cl = &http.Client{Timeout: 5 * time.Minute}
	}
	url := o.Server
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/") + "/api/v1/inject"
	for {
		var batch []*Row
		for r := range work {
			batch = append(batch, r)
			if len(batch) == o.Batch {
				break
			}
		}
		if len(batch) == 0 {
			return nil
		}
		if err := pace.wait(ctx, len(batch)); err != nil {
			return nil
		}
		rep, err := postBatch(ctx, cl, url, o, batch)
		if err != nil {
			for _, r := range batch {
				out <- result{row: r, reason: err.Error()}
			}
			if _, ok := err.(unreachableError); ok {
				return err
			}
			continue
		}
		refused := make(map[int]string, len(rep.Rejected))
		for _, rj := range rep.Rejected {
			refused[rj.Index] = rj.Reason
		}
		for i, r := range batch {
			if why, ok := refused[i]; ok {
				out <- result{row: r, reason: why}
			} else {
				out <- result{row: r, ok: true}
			}
		}
	}
}

// unreachableError is a failure to reach the server, or to be let in.
type unreachableError struct{ error }

func (e unreachableError) Unwrap() error { return e.error }

func postBatch(ctx context.Context, cl *http.Client, url string, o *Options, batch []*Row) (*inject.Reply, error) {
	req := struct {
		EnvelopeSender string             `json:"envelope_sender"`
		Job            string             `json:"job,omitempty"`
		VirtualMTA     string             `json:"virtual_mta,omitempty"`
		Content        string             `json:"content"`
		Recipients     []inject.Recipient `json:"recipients"`
	}{EnvelopeSender: o.Sender, Job: o.Job, VirtualMTA: o.VirtualMTA, Content: string(o.Template)}
	for _, r := range batch {
		subs := make(map[string]any, len(r.Values))
		for k, v := range r.Values {
			subs[k] = v
		}
		req.Recipients = append(req.Recipients, inject.Recipient{Email: r.Email, Substitutions: subs})
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		hr, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
		if err != nil {
			return nil, unreachableError{err}
		}
		hr.Header.Set("Content-Type", "application/json")
		if o.Token != "" {
			hr.Header.Set("Authorization", "Bearer "+o.Token)
		}
		resp, err := cl.Do(hr)
		if err != nil {
			return nil, unreachableError{fmt.Errorf("%w: %v", errUnreachable, err)}
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the reply: %w", err)
		}
		switch {
		case resp.StatusCode == http.StatusOK:
			var rep inject.Reply
			if err := json.Unmarshal(data, &rep); err != nil {
				return nil, fmt.Errorf("malformed reply: %w", err)
			}
			return &rep, nil
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return nil, unreachableError{fmt.Errorf("HTTP %d: check --token or the [inject]/[admin] token", resp.StatusCode)}
		case resp.StatusCode == http.StatusNotFound:
			return nil, unreachableError{fmt.Errorf("HTTP 404: no /api/v1/inject at %s (is it the admin listener?)", url)}
		case resp.StatusCode == http.StatusServiceUnavailable && attempt < httpRetries:
			select {
			case <-time.After(time.Second << attempt):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		var e inject.ErrorReply
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, e.Error)
		}
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
}
