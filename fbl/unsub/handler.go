package unsub

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluice-mta/sluice/fbl/trace"
	"go.uber.org/zap"
)

// OnUnsub is called once per accepted one-click POST. It should suppress
// rcpt in scope and write the opt-out record; an error answers 500 and the
// mail client may retry. It must be idempotent: a repeated POST calls it
// again.
type OnUnsub func(ctx context.Context, rcpt, scope, job string) error

// Option configures Handler.
type Option func(*handler)

// WithLogger sets the handler's logger (default: none).
func WithLogger(log *zap.Logger) Option {
	return func(h *handler) {
		if log != nil {
			h.log = log
		}
	}
}

// WithMaxBody sets the largest request body read (default 16 KiB).
func WithMaxBody(n int64) Option { return func(h *handler) { h.maxBody = n } }

// WithTimeout bounds each call of OnUnsub (default 10 s).
func WithTimeout(d time.Duration) Option { return func(h *handler) { h.timeout = d } }

const (
	defaultMaxBody = 16 << 10
	maxParts       = 16 // multipart parts looked at
	maxValue       = 64 // bytes of a form value looked at
)

type handler struct {
	keys    trace.Keys
	onUnsub OnUnsub
	log     *zap.Logger
	maxBody int64
	timeout time.Duration
	mux     *http.ServeMux
}

// Handler serves RFC 8058 one-click unsubscribe:
//
//   - POST /u/{token} with List-Unsubscribe=One-Click in an
//     application/x-www-form-urlencoded or multipart/form-data body
//     (RFC 8058 §3.1) calls onUnsub and answers 200, with no redirect
//     (RFC 8058 §3.2);
//   - GET /u/{token} shows a confirmation page whose button makes that POST,
//     and changes nothing: link scanners and prefetchers follow GETs
//     (RFC 8058 §3.2);
//   - an unauthentic token gets 404, a POST without the pair 400, another
//     content type 415, another method 405, and a body over the cap 413.
//
// It is meant for its own listener, apart from the admin API; the caller
// sets the http.Server timeouts.
func Handler(keys trace.Keys, onUnsub OnUnsub, opts ...Option) http.Handler {
	h := &handler{keys: keys, onUnsub: onUnsub, log: zap.NewNop(), maxBody: defaultMaxBody, timeout: 10 * time.Second}
	for _, o := range opts {
		o(h)
	}
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("POST /u/{token}", h.post)
	h.mux.HandleFunc("GET /u/{token}", h.get) // HEAD too
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer") // the token is in the URL
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	h.mux.ServeHTTP(w, r)
}

// token authenticates the path's token, answering 404 if it fails.
func (h *handler) token(w http.ResponseWriter, r *http.Request) (Token, bool) {
	t, err := ParseToken(r.PathValue("token"), h.keys)
	if err != nil {
		h.log.Debug("unsubscribe token rejected", zap.String("method", r.Method), zap.Error(err))
		page(w, http.StatusNotFound, pageNotFound, nil)
		return Token{}, false
	}
	return t, true
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	t, ok := h.token(w, r)
	if !ok {
		return
	}
	page(w, http.StatusOK, pageConfirm, struct{ Rcpt string }{mask(t.Rcpt)})
}

func (h *handler) post(w http.ResponseWriter, r *http.Request) {
	t, ok := h.token(w, r)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.maxBody)
	status, err := h.oneClick(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			status = http.StatusRequestEntityTooLarge
		}
		h.log.Debug("unsubscribe request rejected", zap.Int("status", status), zap.Error(err))
		page(w, status, pageBadRequest, nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	if err := h.onUnsub(ctx, t.Rcpt, t.Scope, t.Job); err != nil {
		h.log.Error("unsubscribe failed", zap.String("rcpt", t.Rcpt), zap.String("job_id", t.Job), zap.Error(err))
		page(w, http.StatusInternalServerError, pageFailed, nil)
		return
	}
	h.log.Debug("unsubscribed", zap.String("rcpt", t.Rcpt), zap.String("job_id", t.Job))
	page(w, http.StatusOK, pageDone, struct{ Rcpt string }{mask(t.Rcpt)})
}

// oneClick checks that the body carries List-Unsubscribe=One-Click, in
// either content type RFC 8058 §3.1 allows.
func (h *handler) oneClick(r *http.Request) (int, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return http.StatusUnsupportedMediaType, err
	}
	var v string
	switch mt {
	case "application/x-www-form-urlencoded":
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return http.StatusBadRequest, err
		}
		q, err := url.ParseQuery(string(b))
		if err != nil {
			return http.StatusBadRequest, err
		}
		v = q.Get("List-Unsubscribe")
	case "multipart/form-data":
		if v, err = multipartValue(r.Body, params["boundary"]); err != nil {
			return http.StatusBadRequest, err
		}
	default:
		return http.StatusUnsupportedMediaType, errors.New("content type " + mt)
	}
	if !strings.EqualFold(strings.TrimSpace(v), "One-Click") {
		return http.StatusBadRequest, errors.New("no List-Unsubscribe=One-Click in the body")
	}
	return http.StatusOK, nil
}

// multipartValue returns the List-Unsubscribe field of a multipart/form-data
// body, reading at most maxParts parts and maxValue bytes of the value.
func multipartValue(body io.Reader, boundary string) (string, error) {
	if boundary == "" {
		return "", errors.New("multipart without boundary")
	}
	mr := multipart.NewReader(body, boundary)
	for range maxParts {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		if p.FormName() == "List-Unsubscribe" {
			b, err := io.ReadAll(io.LimitReader(p, maxValue))
			if err != nil {
				return "", err
			}
			return string(bytes.TrimSpace(b)), nil
		}
	}
	return "", errors.New("too many parts")
}

// mask hides most of the local-part, so that a forwarded or scanned link
// does not show the whole address: "john@example.com" → "j***@example.com".
func mask(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 {
		return "***"
	}
	r := []rune(addr[:i])
	return string(r[0]) + "***" + addr[i:]
}

const (
	pageConfirm    = "confirm"
	pageDone       = "done"
	pageNotFound   = "notfound"
	pageBadRequest = "bad"
	pageFailed     = "failed"
)

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><meta name="robots" content="noindex"><title>Unsubscribe</title><style>body{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em}</style></head><body>{{end}}
{{define "confirm"}}{{template "head"}}<h1>Unsubscribe</h1><p>Stop these mailings to {{.Rcpt}}?</p><form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form></body></html>{{end}}
{{define "done"}}{{template "head"}}<h1>Unsubscribed</h1><p>{{.Rcpt}} will not receive these mailings any more.</p></body></html>{{end}}
{{define "notfound"}}{{template "head"}}<h1>Link not valid</h1><p>This unsubscribe link is not valid. Please use the link from the message itself.</p></body></html>{{end}}
{{define "bad"}}{{template "head"}}<h1>Bad request</h1><p>Please use the button on the unsubscribe page.</p></body></html>{{end}}
{{define "failed"}}{{template "head"}}<h1>Please try again</h1><p>We could not record your request just now. Please try again later.</p></body></html>{{end}}
`))

func page(w http.ResponseWriter, status int, name string, data any) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}
