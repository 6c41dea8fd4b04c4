package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// Campaign injection tests use 127.20.90.0/24 through 127.20.94.0/24.

const (
	injectAdminToken = "e2e-inject-admin-token-0123"
	injectToken      = "e2e-inject-only-token-4567"
)

// injectDaemon is a daemon with the admin API (and the inject token), an
// MX sink for inj.test, and the addresses to reach them.
type injectDaemon struct {
	*testenv.Daemon
	api  string
	sink *testenv.Sink
}

func startInjectDaemon(t *testing.T, net int) *injectDaemon {
	t.Helper()
	dns := startDNS(t)
	sinkIP := fmt.Sprintf("127.20.%d.1", net)
	sink := testenv.StartSink(t, sinkIP+":25", testenv.SinkOptions{Hostname: "mx.inj.test"})
	mxTo(dns, "inj.test", sinkIP)
	api := testenv.FreeAddr(t, fmt.Sprintf("127.20.%d.253", net))
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, fmt.Sprintf("127.20.%d.254", net)),
		DNS:     []string{dns.Addr()},
		Sources: []testenv.Source{{CIDR: "127.0.0.0/8", Relay: true, ProcessXJob: true}},
		Domains: map[string]testenv.Domain{"*": {MaxSMTPOut: 4, MaxMsgPerConnection: testenv.Unlimited, RetryAfter: []string{"1s"}}},
		Extra:   fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = %q\n\n[inject]\ntoken = %q\n", api, injectAdminToken, injectToken),
	}.TOML())
	testenv.WaitListening(t, api, 10*time.Second)
	return &injectDaemon{Daemon: d, api: api, sink: sink}
}

// post sends body to path with token and returns the status and reply.
func (d *injectDaemon) post(t *testing.T, path, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+d.api+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

type injectReply struct {
	Job      string `json:"job"`
	Accepted int    `json:"accepted"`
	Rejected []struct {
		Email, Reason string
		Index         int
	} `json:"rejected"`
	Error string `json:"error"`
	Field string `json:"field"`
}

// textParts decodes the text parts of a message by media type.
func textParts(t *testing.T, data []byte) (*mail.Message, map[string]string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("message: %v\n%s", err, data)
	}
	out := map[string]string{}
	ct := m.Header.Get("Content-Type")
	if ct == "" {
		ct = "text/plain" // RFC 2045 §5.2
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	read := func(cte string, r io.Reader) string {
		if cte == "quoted-printable" {
			r = quotedprintable.NewReader(r)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		out[mt] = read(m.Header.Get("Content-Transfer-Encoding"), m.Body)
		return m, out
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return m, out
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		out[pt] = read(p.Header.Get("Content-Transfer-Encoding"), p)
	}
}

// TestInjectHTTP sends 200 personalised recipients in one request and
// checks each arrives with its own subject and bodies, as valid MIME (also
// by Python's email parser); then the refusals: bad JSON, a bad template,
// the wrong token, and a suppressed recipient.
func TestInjectHTTP(t *testing.T) {
	d := startInjectDaemon(t, 90)
	const n = 200
	type rcpt struct {
		Email         string            `json:"email"`
		Name          string            `json:"name"`
		Substitutions map[string]string `json:"substitutions"`
	}
	req := map[string]any{
		"envelope_sender": "bounces@shop.test", "job": "spring-sale",
		"content": map[string]any{"from": "Shop <shop@shop.test>", "subject": "Hello {{.name}} ({{.code}})",
			"text_body": "Dear {{.name}},\nyour code is {{.code}}. Grüße, {{.brand}}\n",
			"html_body": "<p>Dear {{.name}}, code <b>{{.code}}</b></p>",
			"headers":   map[string]string{"X-Campaign": "spring"}},
		"substitutions": map[string]string{"brand": "Shop"},
	}
	var rcpts []rcpt
	for i := range n {
		rcpts = append(rcpts, rcpt{Email: fmt.Sprintf("u%03d@inj.test", i), Name: fmt.Sprintf("User %d", i),
			Substitutions: map[string]string{"code": fmt.Sprintf("C%03d", i)}})
	}
	req["recipients"] = rcpts
	body, _ := json.Marshal(req)
	code, raw := d.post(t, "/api/v1/inject", injectToken, string(body))
	var rep injectReply
	if err := json.Unmarshal(raw, &rep); err != nil || code != 200 || rep.Accepted != n || len(rep.Rejected) != 0 || rep.Job != "spring-sale" {
		t.Fatalf("inject: %d %s", code, raw)
	}
	d.sink.WaitCount(t, n, 60*time.Second)
	seen := map[string]bool{}
	var sample []byte
	for _, m := range d.sink.Messages() {
		if len(m.Rcpts) != 1 {
			t.Fatalf("rcpts %v", m.Rcpts)
		}
		var i int
		if _, err := fmt.Sscanf(m.Rcpts[0], "u%03d@inj.test", &i); err != nil {
			t.Fatalf("rcpt %q", m.Rcpts[0])
		}
		seen[m.Rcpts[0]] = true
		msg, parts := textParts(t, m.Data)
		subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if want := fmt.Sprintf("Hello User %d (C%03d)", i, i); subj != want {
			t.Errorf("%s: subject %q, want %q", m.Rcpts[0], subj, want)
		}
		if want := fmt.Sprintf("Dear User %d,\r\nyour code is C%03d. Grüße, Shop\r\n", i, i); parts["text/plain"] != want {
			t.Errorf("%s: text %q, want %q", m.Rcpts[0], parts["text/plain"], want)
		}
		if want := fmt.Sprintf("<p>Dear User %d, code <b>C%03d</b></p>", i, i); parts["text/html"] != want {
			t.Errorf("%s: html %q", m.Rcpts[0], parts["text/html"])
		}
		if msg.Header.Get("X-Campaign") != "spring" || msg.Header.Get("Message-ID") == "" || msg.Header.Get("Date") == "" {
			t.Errorf("%s: header %v", m.Rcpts[0], msg.Header)
		}
		if m.From != "bounces@shop.test" {
			t.Errorf("envelope sender %q", m.From)
		}
		sample = m.Data
	}
	if len(seen) != n {
		t.Errorf("%d distinct recipients at the sink, want %d", len(seen), n)
	}
	checkMIMEWithPython(t, sample)
	if recs := d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.FieldIs("jobId", "spring-sale")), n, 10*time.Second); len(recs) != n {
		t.Errorf("%d d rows with jobId spring-sale, want %d", len(recs), n)
	}

	// Refused as a whole: nothing is queued.
	for _, c := range []struct{ name, body, field string }{
		{"malformed", `{"envelope_sender": "b@shop.test", "recipients": [`, ""},
		{"missing field", `{"content": "From: a@shop.test\n\nx", "recipients": [{"email": "x@inj.test"}]}`, "envelope_sender"},
		{"template", `{"envelope_sender": "b@shop.test", "content": {"from": "a@shop.test", "subject": "{{.x", "text_body": "x"}, "recipients": [{"email": "x@inj.test"}]}`, "content.subject"},
	} {
		code, raw := d.post(t, "/api/v1/inject", injectToken, c.body)
		var e injectReply
		json.Unmarshal(raw, &e)
		if code != 400 || e.Field != c.field || e.Error == "" {
			t.Errorf("%s: %d %s, want 400 naming %q", c.name, code, raw, c.field)
		}
	}
	if code, raw := d.post(t, "/api/v1/inject", "wrong-token-wrong-token", string(body)); code != 401 {
		t.Errorf("wrong token: %d %s", code, raw)
	}
	// The inject token injects but does not administer.
	req2, _ := http.NewRequest("GET", "http://"+d.api+"/api/v1/status", nil)
	req2.Header.Set("Authorization", "Bearer "+injectToken)
	resp, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("inject token on /api/v1/status: %d, want 401", resp.StatusCode)
	}

	// Suppression through the fbl list; the admin token works here too.
	if code, raw := d.post(t, "/api/v1/suppressions", injectAdminToken, `{"addr": "gone@inj.test", "reason": "manual"}`); code/100 != 2 {
		t.Fatalf("suppress: %d %s", code, raw)
	}
	code, raw = d.post(t, "/api/v1/inject", injectAdminToken, `{"envelope_sender": "b@shop.test", "job": "j2",
	  "content": "From: shop@shop.test\nSubject: hi\n\nhello {{.email}}\n",
	  "recipients": [{"email": "gone@inj.test"}, {"email": "kept@inj.test"}, {"email": "bad address"}]}`)
	rep = injectReply{}
	json.Unmarshal(raw, &rep)
	if code != 200 || rep.Accepted != 1 || len(rep.Rejected) != 2 || rep.Rejected[0].Email != "gone@inj.test" || rep.Rejected[0].Reason != "suppressed" {
		t.Errorf("suppressed: %d %s", code, raw)
	}
	d.sink.WaitCount(t, n+1, 20*time.Second)
	time.Sleep(300 * time.Millisecond)
	if d.sink.Count() != n+1 {
		t.Errorf("sink holds %d, want %d: a refused request or recipient was sent", d.sink.Count(), n+1)
	}
}

// checkMIMEWithPython parses data with Python's email package (policy
// default, which reports defects) and fails on any defect.
func checkMIMEWithPython(t *testing.T, data []byte) {
	t.Helper()
	py := testenv.RequireTool(t, "python3")
	f := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	script := `import sys, email, email.policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
defects = list(m.defects)
for p in m.walk():
    defects += p.defects
    if not p.is_multipart():
        p.get_content()
print(m.get_content_type(), m["subject"], len(defects))
sys.exit(1 if defects else 0)
`
	out, err := exec.Command(py, "-c", script, f).CombinedOutput()
	if err != nil {
		t.Errorf("python email parser: %v\n%s", err, out)
	}
}
