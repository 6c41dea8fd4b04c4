package inject

import (
	"bytes"
	"testing"
	"time"
)

// FuzzRequest feeds arbitrary bodies to Decode, Compile and Render: they
// must return (an error is fine), never panic or hang.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(`{"envelope_sender": "b@s.test", "content": {"from": "a@b.test", "subject": "{{.x}}", "text_body": "é {{.email}}", "html_body": "<p>{{.name}}</p>"}, "recipients": [{"email": "r@a.test", "name": "R", "substitutions": {"x": 1}}]}`))
	f.Add([]byte(`{"envelope_sender": "b@s.test", "content": "From: a@b.test\nSubject: {{.email}}\n\nbody", "recipients": [{"email": "r@a.test"}]}`))
	f.Add([]byte(`{"content": {"attachments": [{"filename": "x", "data_base64": "AAAA"}]}}`))
	f.Add([]byte(`[1, 2`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := Decode(body)
		if err != nil {
			return
		}
		tmpl, rerr := Compile(&req.Content)
		if rerr != nil {
			return
		}
		var bufs Buffers
		for i := range req.Recipients[:min(len(req.Recipients), 3)] {
			r := &req.Recipients[i]
			out, err := tmpl.Render(Data(req.Substitutions, r), r, Meta{MessageID: "x@y", Date: time.Unix(0, 0)}, &bufs)
			if err == nil && bytes.Contains(out.Body, []byte("\n")) && !bytes.Contains(out.Body, []byte("\r\n")) {
				t.Errorf("bare LF line ends in %q", out.Body)
			}
		}
	})
}
