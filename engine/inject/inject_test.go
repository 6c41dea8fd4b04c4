package inject

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/engine/submit"
)

type recorder struct {
	mu  sync.Mutex
	got []*spool.Message
}

func (r *recorder) Enqueue(m *spool.Message) {
	r.mu.Lock()
	r.got = append(r.got, m)
	r.mu.Unlock()
}

type knownVMTAs map[string]bool

func (k knownVMTAs) Known(n string) bool { return n == "" || k[n] }

type stubSuppressor map[string]bool

func (s stubSuppressor) Suppressed(_ context.Context, rcpt, _ string) (bool, error) {
	return s[strings.ToLower(rcpt)], nil
}

type fixture struct {
	h     *Handler
	store *spool.Store
	q     *recorder
}

func newFixture(t testing.TB, sup Suppressor) *fixture {
	t.Helper()
	st, err := spool.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	q := &recorder{}
	h := NewHandler(Options{
		Hostname:   "mta.inject.test",
		Submit:     &submit.Pipeline{Spool: st, Queue: q},
		NewID:      st.NewID,
		VMTAs:      knownVMTAs{"pool-a": true},
		Suppressor: sup,
		Now:        func() time.Time { return time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) },
	})
	return &fixture{h: h, store: st, q: q}
}

func (f *fixture) post(t testing.TB, body string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest("POST", "/api/v1/inject", strings.NewReader(body))
	req.RemoteAddr = "127.43.0.9:5555"
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return w.Code, w.Body.Bytes()
}

// messages returns the spooled message of each queued recipient.
func (f *fixture) messages(t testing.TB) map[string]*mail.Message {
	t.Helper()
	out := map[string]*mail.Message{}
	for _, m := range f.q.got {
		b, err := f.store.Body(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v\n%s", m.Rcpts[0].Addr, err, b)
		}
		out[m.Rcpts[0].Addr] = msg
	}
	return out
}

func decodeHeader(t testing.TB, v string) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(v)
	if err != nil {
		t.Fatalf("decode %q: %v", v, err)
	}
	return s
}

// parts returns the decoded text parts of m by content type.
func parts(t testing.TB, m *mail.Message) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(ctype, cte string, body io.Reader)
	walk = func(ctype, cte string, body io.Reader) {
		mt, params, err := mime.ParseMediaType(ctype)
		if err != nil {
			t.Fatalf("content type %q: %v", ctype, err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatalf("multipart: %v", err)
				}
				walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p)
			}
		}
		if cte == "quoted-printable" {
			body = quotedprintable.NewReader(body)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		out[mt] = string(b)
	}
	walk(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body)
	return out
}

func TestInjectPersonalised(t *testing.T) {
	f := newFixture(t, nil)
	code, body := f.post(t, `{"envelope_sender": "bounces@shop.test", "job": "spring", "virtual_mta": "pool-a",
	  "content": {"from": "Café Shop <shop@shop.test>", "subject": "Hello {{.name}}, {{.brand}} ❤",
	    "text_body": "Hi {{.name}},\nyour code is {{.code}}.\nÉté {{.brand}}\n",
	    "html_body": "<p>Hi {{.name}}, code <b>{{.code}}</b></p>",
	    "headers": {"X-Campaign": "s1-{{.code}}"}},
	  "substitutions": {"brand": "Shop", "code": "GLOBAL"},
	  "recipients": [
	    {"email": "ann@a.test", "name": "Ann", "substitutions": {"code": "A1"}},
	    {"email": "bob@b.test", "substitutions": {"name": "<Bob & co>"}}]}`)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var rep Reply
	if err := json.Unmarshal(body, &rep); err != nil || rep.Accepted != 2 || len(rep.Rejected) != 0 || rep.Job != "spring" {
		t.Fatalf("reply %s (%v)", body, err)
	}
	for _, m := range f.q.got {
		if m.Env.JobID != "spring" || m.Env.VMTA != "pool-a" || m.Env.From != "bounces@shop.test" || m.Env.SourceIP != "127.43.0.9" {
			t.Errorf("envelope %+v", m.Env)
		}
	}
	msgs := f.messages(t)
	ann, bob := msgs["ann@a.test"], msgs["bob@b.test"]
	if ann == nil || bob == nil {
		t.Fatalf("messages for %v", msgs)
	}
	if got := decodeHeader(t, ann.Header.Get("Subject")); got != "Hello Ann, Shop ❤" {
		t.Errorf("subject %q", got)
	}
	if got := decodeHeader(t, ann.Header.Get("From")); got != "Café Shop <shop@shop.test>" {
		t.Errorf("from %q", got)
	}
	if got := ann.Header.Get("To"); got != `"Ann" <ann@a.test>` {
		t.Errorf("to %q", got)
	}
	if ann.Header.Get("X-Campaign") != "s1-A1" || bob.Header.Get("X-Campaign") != "s1-GLOBAL" {
		t.Errorf("X-Campaign %q %q", ann.Header.Get("X-Campaign"), bob.Header.Get("X-Campaign"))
	}
	for _, h := range []string{"Date", "Message-ID", "MIME-Version", "Received"} {
		if ann.Header.Get(h) == "" {
			t.Errorf("no %s", h)
		}
	}
	if !strings.HasPrefix(ann.Header.Get("Content-Type"), "multipart/alternative;") {
		t.Errorf("content type %q", ann.Header.Get("Content-Type"))
	}
	p := parts(t, ann)
	if p["text/plain"] != "Hi Ann,\r\nyour code is A1.\r\nÉté Shop\r\n" {
		t.Errorf("text %q", p["text/plain"])
	}
	if p["text/html"] != "<p>Hi Ann, code <b>A1</b></p>" {
		t.Errorf("html %q", p["text/html"])
	}
	// html/template escapes values; text/template does not.
	if p := parts(t, bob); p["text/html"] != "<p>Hi &lt;Bob &amp; co&gt;, code <b>GLOBAL</b></p>" || !strings.HasPrefix(p["text/plain"], "Hi <Bob & co>,") {
		t.Errorf("bob: %q", p)
	}
}

func TestInjectRejections(t *testing.T) {
	f := newFixture(t, stubSuppressor{"gone@a.test": true})
	code, body := f.post(t, `{"envelope_sender": "b@s.test", "job": "j",
	  "content": {"from": "s@s.test", "subject": "{{.code}}", "text_body": "x"},
	  "recipients": [{"email": "ok@a.test", "substitutions": {"code": "1"}},
	    {"email": "gone@a.test", "substitutions": {"code": "2"}},
	    {"email": "not an address"},
	    {"email": "nocode@a.test"},
	    {"email": "OK@a.test", "substitutions": {"code": "1"}}]}`)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var rep Reply
	json.Unmarshal(body, &rep)
	if rep.Accepted != 1 || len(rep.Rejected) != 4 {
		t.Fatalf("reply %s", body)
	}
	want := []struct {
		idx    int
		reason string
	}{{1, "suppressed"}, {2, "invalid address"}, {3, `template: content.subject:1:2: executing "content.subject" at <.code>: map has no entry for key "code"`}, {4, "duplicate"}}
	for i, w := range want {
		r := rep.Rejected[i]
		if r.Index != w.idx || !strings.HasPrefix(r.Reason, w.reason) {
			t.Errorf("rejected[%d] = %+v, want index %d reason %q", i, r, w.idx, w.reason)
		}
	}
	if len(f.q.got) != 1 || f.q.got[0].Rcpts[0].Addr != "ok@a.test" {
		t.Errorf("queued %d", len(f.q.got))
	}
}

func TestInjectBadRequests(t *testing.T) {
	const ok = `"envelope_sender": "b@s.test", "recipients": [{"email": "r@a.test"}]`
	cases := []struct {
		name, body string
		field      string
		line       int
		msg        string
	}{
		{"syntax", "{\"job\": \"x\",\n \"recipients\": [}", "", 0, "malformed JSON at line 2"},
		{"truncated", `{"job": "x"`, "", 0, "malformed JSON"},
		{"trailing", `{` + ok + `, "content": "From: a@b.test\n\nx"} {}`, "", 0, "data after"},
		{"type", `{` + ok + `, "job": 3, "content": "x"}`, "job", 0, "expected string"},
		{"nested type", `{` + ok + `, "content": {"subject": 3}}`, "content.subject", 0, "expected string"},
		{"unknown", `{` + ok + `, "content": "x", "jbo": "x"}`, "jbo", 0, "unknown field"},
		{"unknown in content", `{` + ok + `, "content": {"form": "x"}}`, "content.form", 0, "unknown field"},
		{"no sender", `{"recipients": [{"email": "r@a.test"}], "content": "x"}`, "envelope_sender", 0, "required"},
		{"no recipients", `{"envelope_sender": "b@s.test", "content": "x"}`, "recipients", 0, "required"},
		{"no content", `{` + ok + `}`, "content", 0, "required"},
		{"no from", `{` + ok + `, "content": {"text_body": "x"}}`, "content.from", 0, "required"},
		{"vmta", `{` + ok + `, "virtual_mta": "nope", "content": "From: a@b.test\n\nx"}`, "virtual_mta", 0, "unknown"},
		{"template", `{` + ok + `, "content": {"from": "a@b.test", "text_body": "line 1\nline 2 {{.x\n"}}`, "content.text_body", 2, "unparseable template"},
		{"raw template", `{` + ok + `, "content": "From: a@b.test\n\n{{end}}"}`, "content", 3, "unparseable template"},
		{"html template", `{` + ok + `, "content": {"from": "a@b.test", "html_body": "<p>{{if}}</p>"}}`, "content.html_body", 1, "unparseable template"},
		{"reserved header", `{` + ok + `, "content": {"from": "a@b.test", "text_body": "x", "headers": {"Subject": "x"}}}`, "content.headers.Subject", 0, "set by Sluice"},
		{"base64", `{` + ok + `, "content": {"from": "a@b.test", "text_body": "x", "attachments": [{"filename": "a", "data_base64": "!!"}]}}`, "content.attachments.data_base64", 0, "base64"},
	}
	many := make([]string, MaxRecipients+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"email": "r%d@a.test"}`, i)
	}
	cases = append(cases, struct {
		name, body string
		field      string
		line       int
		msg        string
	}{"too many", `{"envelope_sender": "b@s.test", "content": "x", "recipients": [` + strings.Join(many, ",") + `]}`, "recipients", 0, "at most 10000"})
	f := newFixture(t, nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := f.post(t, c.body)
			var e ErrorReply
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("reply %q: %v", body, err)
			}
			if code != 400 || e.Field != c.field || e.Line != c.line || !strings.Contains(e.Error, c.msg) {
				t.Errorf("got %d %+v, want 400 field %q line %d containing %q", code, e, c.field, c.line, c.msg)
			}
		})
	}
	if len(f.q.got) != 0 || f.store.Len() != 0 {
		t.Errorf("a refused request queued %d, spooled %d", len(f.q.got), f.store.Len())
	}
}

func TestInjectRawAndAttachments(t *testing.T) {
	f := newFixture(t, nil)
	code, body := f.post(t, `{"envelope_sender": "b@s.test",
	  "content": "From: Shop <shop@s.test>\nSubject: Hi {{.name}}\n\nBody for {{.email}}\n",
	  "recipients": [{"email": "r@a.test", "name": "Ray"}]}`)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	m := f.messages(t)["r@a.test"]
	if m.Header.Get("Subject") != "Hi Ray" || m.Header.Get("Message-ID") == "" || m.Header.Get("Date") == "" || m.Header.Get("To") != `"Ray" <r@a.test>` {
		t.Errorf("raw header %v", m.Header)
	}
	if b, _ := io.ReadAll(m.Body); string(b) != "Body for r@a.test\r\n" {
		t.Errorf("raw body %q", b)
	}

	f = newFixture(t, nil)
	pdf := bytes.Repeat([]byte("%PDF-1.4 binary\x00\xff"), 20)
	req, _ := json.Marshal(Request{EnvelopeSender: "b@s.test", Recipients: []Recipient{{Email: "r@a.test"}},
		Content: Content{From: "s@s.test", Subject: "doc", TextBody: "see attached",
			Attachments: []Attachment{{Filename: "ré sumé.pdf", ContentType: "application/pdf", Data: pdf}}}})
	code, body = f.post(t, string(req))
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	m = f.messages(t)["r@a.test"]
	mt, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if mt != "multipart/mixed" {
		t.Fatalf("content type %q", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	p1, err := mr.NextPart()
	if err != nil || !strings.HasPrefix(p1.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("part 1: %v %v", err, p1.Header)
	}
	p2, err := mr.NextPart() // NextPart decodes base64? No: only quoted-printable.
	if err != nil {
		t.Fatal(err)
	}
	if p2.FileName() != "ré sumé.pdf" || p2.Header.Get("Content-Type") != "application/pdf" {
		t.Errorf("attachment header %v (filename %q)", p2.Header, p2.FileName())
	}
	raw, _ := io.ReadAll(p2)
	var dec bytes.Buffer
	if _, err := io.Copy(&dec, newBase64Reader(raw)); err != nil || !bytes.Equal(dec.Bytes(), pdf) {
		t.Errorf("attachment data differs (%v)", err)
	}
}

func TestWriteFieldFolds(t *testing.T) {
	var b bytes.Buffer
	v := encodeWords(strings.Repeat("Grüße aus Köln ", 12))
	writeField(&b, "Subject", v)
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\r\n"), "\r\n") {
		if len(l) > 78 {
			t.Errorf("line of %d: %q", len(l), l)
		}
	}
	m, err := mail.ReadMessage(strings.NewReader(b.String() + "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeHeader(t, m.Header.Get("Subject")); got != strings.Repeat("Grüße aus Köln ", 12) {
		t.Errorf("round trip %q", got)
	}
}

var _ http.Handler = (*Handler)(nil)

func newBase64Reader(b []byte) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, bytes.NewReader(b)) // skips CR and LF
}

func TestAppendQP(t *testing.T) {
	cases := []string{
		"", "plain", "trailing space \r\nand tab\t\r\nend", "=equals= and ünïcödé",
		strings.Repeat("x", 200), strings.Repeat("é", 100) + "\r\n" + strings.Repeat("a ", 80),
		"\x00\x01\xff binary", "line\r\n\r\n\r\nlast ",
	}
	for _, c := range cases {
		enc := appendQP(nil, []byte(c))
		for _, l := range strings.Split(string(enc), "\r\n") {
			if len(l) > 76 {
				t.Errorf("%q: line of %d: %q", c, len(l), l)
			}
			if strings.HasSuffix(l, " ") || strings.HasSuffix(l, "\t") {
				t.Errorf("%q: white space at line end: %q", c, l)
			}
		}
		dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc)))
		if err != nil || string(dec) != c {
			t.Errorf("%q: round trip %q (%v) via %q", c, dec, err, enc)
		}
	}
}

func TestInjectLimitsAndSpoolFailure(t *testing.T) {
	f := newFixture(t, nil)
	f.h.opts.MaxBody = 100
	if code, body := f.post(t, `{"envelope_sender": "b@s.test", "content": "From: a@b.test\n\n`+strings.Repeat("x", 200)+`", "recipients": [{"email": "r@a.test"}]}`); code != 413 {
		t.Errorf("oversized body: %d %s", code, body)
	}
	f = newFixture(t, nil)
	f.store.Close() // every commit now fails
	code, body := f.post(t, `{"envelope_sender": "b@s.test", "content": "From: a@b.test\n\nx", "recipients": [{"email": "r@a.test"}, {"email": "s@a.test"}]}`)
	if code != 503 || len(f.q.got) != 0 || !strings.Contains(string(body), "nothing was queued") {
		t.Errorf("spool failure: %d %s, queued %d", code, body, len(f.q.got))
	}
}

func TestRenderCapped(t *testing.T) {
	f := newFixture(t, nil)
	f.h.opts.MaxMessage = 1 << 20
	code, body := f.post(t, `{"envelope_sender": "b@s.test", "content": "From: a@b.test\n\n{{range 100000000}}0123456789{{end}}", "recipients": [{"email": "r@a.test"}]}`)
	if code != 200 || !strings.Contains(string(body), "larger than 1048576 bytes") {
		t.Errorf("%d %s", code, body)
	}
}
