package unsub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-mta/sluice/fbl/trace"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	key1 = []byte("0123456789abcdef0123456789abcdef")
	key2 = []byte("fedcba9876543210fedcba9876543210")
)

func TestTokenRoundTrip(t *testing.T) {
	cases := []Token{
		{"john.doe@example.com", "tenant1", "job-2026-03"},
		{"a@b", "", ""},
		{"Üser+tag@bücher.test", "t", "j"},
		{strings.Repeat("x", 300) + "@b.test", "", "job"},
	}
	for _, c := range cases {
		tok := MakeToken(c.Rcpt, c.Scope, c.Job, key1)
		got, err := ParseToken(tok, trace.Keys{Current: key1})
		if err != nil || got != c {
			t.Errorf("ParseToken(MakeToken(%+v)) = %+v, %v", c, got, err)
		}
		if strings.ContainsAny(tok, "+/=") {
			t.Errorf("token %q is not unpadded base64url", tok)
		}
	}
	tok := MakeToken("john.doe@example.com", "tenant1", "job-2026-03", key1)
	t.Logf("typical token: %d characters", len(tok))
	if len(tok) > 80 {
		t.Errorf("typical token is %d characters, want compact (<= 80)", len(tok))
	}
}

func TestTokenKeys(t *testing.T) {
	tok := MakeToken("a@b.test", "s", "j", key1)
	cases := []struct {
		keys trace.Keys
		ok   bool
	}{
		{trace.Keys{Current: key1}, true},
		{trace.Keys{Current: key2, Old: [][]byte{key1}}, true}, // rotated
		{trace.Keys{Current: key2}, false},
		{trace.Keys{}, false},
	}
	for i, c := range cases {
		_, err := ParseToken(tok, c.keys)
		if (err == nil) != c.ok {
			t.Errorf("case %d: err = %v, want ok=%v", i, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrForged) {
			t.Errorf("case %d: %v is not ErrForged", i, err)
		}
	}
	// A token made with an empty key never authenticates.
	if _, err := ParseToken(MakeToken("a@b.test", "", "", nil), trace.Keys{Current: nil, Old: [][]byte{{}}}); !errors.Is(err, ErrForged) {
		t.Errorf("empty-key token: %v", err)
	}
	// Not interchangeable with the trace header's MAC, even with one secret.
	ref := trace.Encode(trace.Ref{Rcpt: "a@b.test", JobID: "j"}, trace.Keys{Current: key1})
	if _, err := ParseToken(ref, trace.Keys{Current: key1}); !errors.Is(err, ErrForged) {
		t.Errorf("a trace header value parsed as a token: %v", err)
	}
}

func TestTokenTampered(t *testing.T) {
	tok := MakeToken("a@b.test", "s", "j", key1)
	keys := trace.Keys{Current: key1}
	bad := []string{
		"",
		"x",
		tok[:len(tok)-1],
		tok + "A",
		"!" + tok[1:],
		strings.Repeat("A", MaxTokenLen+1),
	}
	for i := range len(tok) { // every single-character change
		c := byte('A')
		if tok[i] == 'A' {
			c = 'B'
		}
		bad = append(bad, tok[:i]+string(c)+tok[i+1:])
	}
	for _, b := range bad {
		if got, err := ParseToken(b, keys); err == nil {
			t.Errorf("ParseToken(%q) accepted: %+v", b, got)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add(MakeToken("a@b.test", "s", "j", key1))
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		ParseToken(s, trace.Keys{Current: key1}) // must return, never panic
	})
}

func TestHeaders(t *testing.T) {
	cases := []struct {
		base, dom, lu, post string
	}{
		{"https://u.example.com", "example.com", "<https://u.example.com/u/TOK>, <mailto:unsub+TOK@example.com>", PostValue},
		{"https://u.example.com/", "", "<https://u.example.com/u/TOK>", PostValue},
		{"https://x.test/mail", "", "<https://x.test/mail/u/TOK>", PostValue},
		{"", "example.com", "<mailto:unsub+TOK@example.com>", ""},
		{"", "", "", ""},
	}
	for _, c := range cases {
		lu, post := Headers(c.base, c.dom, "TOK")
		if lu != c.lu || post != c.post {
			t.Errorf("Headers(%q, %q) = %q, %q; want %q, %q", c.base, c.dom, lu, post, c.lu, c.post)
		}
	}
	if PostValue != "List-Unsubscribe=One-Click" {
		t.Errorf("PostValue = %q", PostValue)
	}
}

func TestCheckBaseURL(t *testing.T) {
	cases := []struct {
		in string
		ok bool
	}{
		{"https://u.example.com", true},
		{"https://u.example.com/mail/", true},
		{"http://127.32.0.1:8080", true},
		{"http://localhost:8080", true},
		{"http://u.example.com", false},
		{"ftp://u.example.com", false},
		{"u.example.com", false},
		{"https://u.example.com/?a=b", false},
		{"https://user@u.example.com", false},
		{"https://u.example.com/#x", false},
		{"://", false},
	}
	for _, c := range cases {
		if err := CheckBaseURL(c.in); (err == nil) != c.ok {
			t.Errorf("CheckBaseURL(%q) = %v, want ok=%v", c.in, err, c.ok)
		}
	}
}

func TestTokenFromAddress(t *testing.T) {
	tok := MakeToken("a@b.test", "", "j", key1)
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"unsub+" + tok, tok, true},
		{"UNSUB+" + tok + "@example.com", tok, true},
		{"unsub+" + tok + "@", tok, true},
		{"unsub+", "", false},
		{"unsub", "", false},
		{"bounces+" + tok, "", false},
		{"unsub+ab=cd", "", false},
		{"unsub+a.b", "", false},
		{"unsub+" + strings.Repeat("a", MaxTokenLen+1), "", false},
		{"", "", false},
	}
	for _, c := range cases {
		got, ok := TokenFromAddress(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("TokenFromAddress(%.30q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	// The mailto URI Headers builds yields the token back.
	lu, _ := Headers("", "example.com", tok)
	addr := strings.TrimSuffix(strings.TrimPrefix(lu, "<mailto:"), ">")
	if got, ok := TokenFromAddress(addr); !ok || got != tok {
		t.Errorf("round trip through Headers: %q, %v", got, ok)
	}
}

// recorder is an OnUnsub that records its calls.
type recorder struct {
	mu    sync.Mutex
	calls []Token
	fail  error
}

func (r *recorder) on(ctx context.Context, rcpt, scope, job string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.calls = append(r.calls, Token{rcpt, scope, job})
	return nil
}

func (r *recorder) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// serve runs the handler on this package's loopback block.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.32.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func do(t *testing.T, method, url, ctype string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	c.CloseIdleConnections()
	return resp.StatusCode, string(b), resp.Header
}

func multipartBody(t *testing.T, fields ...string) (string, *bytes.Buffer) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		mw.WriteField(fields[i], fields[i+1])
	}
	mw.Close()
	return mw.FormDataContentType(), &b
}

const form = "application/x-www-form-urlencoded"

func TestHandlerOneClick(t *testing.T) {
	rec := &recorder{}
	base := serve(t, Handler(trace.Keys{Current: key2, Old: [][]byte{key1}}, rec.on, WithLogger(zaptest.NewLogger(t))))
	tok := MakeToken("John.Doe@example.com", "tenant1", "job7", key1)
	lu, post := Headers(base, "example.com", tok)
	url := strings.TrimSuffix(strings.TrimPrefix(strings.Split(lu, ", ")[0], "<"), ">")

	// What a mail client does: POST the List-Unsubscribe-Post value.
	code, body, hd := do(t, "POST", url, form, strings.NewReader(post))
	if code != http.StatusOK {
		t.Fatalf("one-click POST = %d %s", code, body)
	}
	if rec.n() != 1 || rec.calls[0] != (Token{"John.Doe@example.com", "tenant1", "job7"}) {
		t.Fatalf("onUnsub calls = %+v", rec.calls)
	}
	if !strings.Contains(body, "J***@example.com") || strings.Contains(body, "John.Doe") {
		t.Errorf("confirmation body shows %q", body)
	}
	if hd.Get("Cache-Control") != "no-store" || hd.Get("Referrer-Policy") != "no-referrer" || hd.Get("Location") != "" {
		t.Errorf("headers %v", hd)
	}
	// multipart/form-data, as RFC 8058 §3.1 also allows; repeated POSTs are fine.
	ct, mb := multipartBody(t, "other", "x", "List-Unsubscribe", "One-Click")
	if code, body, _ := do(t, "POST", url, ct, mb); code != http.StatusOK {
		t.Errorf("multipart POST = %d %s", code, body)
	}
	if rec.n() != 2 {
		t.Errorf("onUnsub called %d times, want 2", rec.n())
	}
}

func TestHandlerGetChangesNothing(t *testing.T) {
	rec := &recorder{}
	base := serve(t, Handler(trace.Keys{Current: key1}, rec.on))
	tok := MakeToken("<a@b.test>&\"", "", "j", key1)
	code, body, hd := do(t, "GET", base+"/u/"+tok, "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET = %d", code)
	}
	for _, want := range []string{`<form method="post">`, `name="List-Unsubscribe" value="One-Click"`, "&lt;***@b.test&gt;&amp;&#34;"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if !strings.HasPrefix(hd.Get("Content-Type"), "text/html") || hd.Get("Content-Security-Policy") == "" {
		t.Errorf("headers %v", hd)
	}
	if code, _, _ := do(t, "HEAD", base+"/u/"+tok, "", nil); code != http.StatusOK {
		t.Errorf("HEAD = %d", code)
	}
	if rec.n() != 0 {
		t.Errorf("GET/HEAD called onUnsub %d times", rec.n())
	}
}

func TestHandlerRejects(t *testing.T) {
	rec := &recorder{}
	base := serve(t, Handler(trace.Keys{Current: key1}, rec.on, WithMaxBody(1024)))
	tok := MakeToken("a@b.test", "", "j", key1)
	forged := MakeToken("a@b.test", "", "j", key2)
	ct, mbNo := multipartBody(t, "List-Unsubscribe", "Nope")
	ctBad := "multipart/form-data" // no boundary
	cases := []struct {
		name, method, path, ctype, body string
		want                            int
	}{
		{"forged POST", "POST", "/u/" + forged, form, PostValue, 404},
		{"forged GET", "GET", "/u/" + forged, "", "", 404},
		{"garbage token", "POST", "/u/%00%ff", form, PostValue, 404},
		{"no token", "POST", "/u/", form, PostValue, 404},
		{"other path", "GET", "/admin", "", "", 404},
		{"empty body", "POST", "/u/" + tok, form, "", 400},
		{"wrong value", "POST", "/u/" + tok, form, "List-Unsubscribe=Yes", 400},
		{"multipart wrong value", "POST", "/u/" + tok, ct, mbNo.String(), 400},
		{"multipart no boundary", "POST", "/u/" + tok, ctBad, "x", 400},
		{"bad query", "POST", "/u/" + tok, form, "%zz", 400},
		{"json", "POST", "/u/" + tok, "application/json", `{"List-Unsubscribe":"One-Click"}`, 415},
		{"no content type", "POST", "/u/" + tok, "", PostValue, 415},
		{"too big", "POST", "/u/" + tok, form, PostValue + "&x=" + strings.Repeat("a", 2000), 413},
		{"PUT", "PUT", "/u/" + tok, form, PostValue, 405},
		{"DELETE", "DELETE", "/u/" + tok, "", "", 405},
	}
	for _, c := range cases {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		if code, _, _ := do(t, c.method, base+c.path, c.ctype, body); code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	if rec.n() != 0 {
		t.Errorf("onUnsub called %d times for bad requests", rec.n())
	}
}

func TestHandlerCallbackError(t *testing.T) {
	rec := &recorder{fail: errors.New("redis down")}
	base := serve(t, Handler(trace.Keys{Current: key1}, rec.on))
	tok := MakeToken("a@b.test", "", "j", key1)
	code, body, _ := do(t, "POST", base+"/u/"+tok, form, strings.NewReader(PostValue))
	if code != http.StatusInternalServerError || strings.Contains(body, "redis") {
		t.Errorf("failing callback: %d %q", code, body)
	}
}

func TestMask(t *testing.T) {
	for _, c := range [][2]string{
		{"john@example.com", "j***@example.com"},
		{"ü@x.test", "ü***@x.test"},
		{"@x.test", "***"},
		{"nobody", "***"},
		{"", "***"},
	} {
		if got := mask(c[0]); got != c[1] {
			t.Errorf("mask(%q) = %q, want %q", c[0], got, c[1])
		}
	}
}

func BenchmarkParseToken(b *testing.B) {
	tok := MakeToken("john.doe@example.com", "tenant1", "job-2026-03", key1)
	keys := trace.Keys{Current: key1}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseToken(tok, keys); err != nil {
			b.Fatal(err)
		}
	}
}
