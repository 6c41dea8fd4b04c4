package inject

import (
	"bytes"
	"fmt"
	htemplate "html/template"
	"regexp"
	"sort"
	"strconv"
	"strings"
	ttemplate "text/template"

	"github.com/sluice-mta/sluice/engine/crlf"
)

// Template is a compiled Content. It is safe for concurrent use: one
// request renders its recipients in parallel.
type Template struct {
	raw *tmpl // the whole message, when Content.Raw is set

	from, replyTo, to, subject *tmpl
	text                       *tmpl
	html                       *tmpl            // html/template: contextual escaping of values
	headers                    []headerTemplate // sorted by name
	attachParts                [][]byte         // encoded once per request
	attachData                 int              // bytes of the attachments, for sizing
	size                       int              // of the templates and attachments: about a message
	max                        int              // bytes a rendered part may take [MaxMessage]
	fromFixed                  string           // From, formatted, when it has no template fields
}

type headerTemplate struct {
	name string
	t    *tmpl
}

// parseErrLine finds "template: NAME:LINE:" in a text/template or
// html/template error; an unclosed action names the line it started on.
var (
	parseErrLine  = regexp.MustCompile(`template: [^:]*:(\d+):`)
	parseErrStart = regexp.MustCompile(`started at [^:]*:(\d+)`)
)

// templateError turns a parse error into a RequestError naming the field
// and the line within that field.
func templateError(field string, err error) *RequestError {
	e := &RequestError{Status: 400, Field: field, Msg: "unparseable template: " + err.Error()}
	if m := parseErrStart.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
	} else if m := parseErrLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
	}
	return e
}

func parseText(field, src string) (*tmpl, *RequestError) {
	if src == "" {
		return nil, nil
	}
	// missingkey=error: a recipient lacking a value is refused, rather than
	// sent "<no value>".
	t, err := ttemplate.New(field).Option("missingkey=error").Parse(src)
	if err == nil && strings.Contains(src, "\n") && (field == "content" || field == "content.text_body") {
		// Parse again with CRLF line ends, so rendering rarely converts
		// them. Parse errors keep the line numbers of the original.
		t, err = ttemplate.New(field).Option("missingkey=error").Parse(string(crlf.Normalize([]byte(src))))
	}
	if err != nil {
		return nil, templateError(field, err)
	}
	return newTextTmpl(t), nil
}

// Compile parses every template of c, or returns the first error naming
// the field and line.
func Compile(c *Content) (*Template, *RequestError) {
	t := Template{max: MaxMessage}
	var e *RequestError
	if !c.Structured() {
		t.raw, e = parseText("content", c.Raw)
		t.size = len(c.Raw)
		return &t, e
	}
	fields := []struct {
		dst  **tmpl
		name string
		src  string
	}{
		{&t.from, "content.from", c.From},
		{&t.replyTo, "content.reply_to", c.ReplyTo},
		{&t.to, "content.to", c.To},
		{&t.subject, "content.subject", c.Subject},
		{&t.text, "content.text_body", c.TextBody},
	}
	for _, f := range fields {
		if *f.dst, e = parseText(f.name, f.src); e != nil {
			return nil, e
		}
	}
	if !strings.Contains(c.From, "{{") {
		f, err := formatAddressList(c.From)
		if err != nil {
			return nil, badRequest("content.from", "%v", err)
		}
		t.fromFixed = f
	}
	if c.HTMLBody != "" {
		h, err := htemplate.New("content.html_body").Option("missingkey=error").Parse(c.HTMLBody)
		if err == nil {
			h, err = htemplate.New("content.html_body").Option("missingkey=error").Parse(string(crlf.Normalize([]byte(c.HTMLBody))))
		}
		if err != nil {
			return nil, templateError("content.html_body", err)
		}
		t.html = newHTMLTmpl(h, t.max)
	}
	names := make([]string, 0, len(c.Headers))
	for k := range c.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		ht, e := parseText("content.headers."+k, c.Headers[k])
		if e != nil {
			return nil, e
		}
		if ht != nil {
			t.headers = append(t.headers, headerTemplate{name: k, t: ht})
		}
	}
	for _, a := range c.Attachments {
		p := attachmentPart(a)
		t.attachParts = append(t.attachParts, p)
		t.attachData += len(p) + 64
	}
	t.size = len(c.TextBody) + len(c.HTMLBody) + len(c.Subject) + t.attachData
	for _, v := range c.Headers {
		t.size += len(v)
	}
	return &t, nil
}

// Data merges the values one recipient sees: the global substitutions,
// then "email" and "name" from the recipient, then the recipient's own
// substitutions, later ones winning.
func Data(global map[string]any, r *Recipient) map[string]any {
	m := make(map[string]any, len(global)+len(r.Substitutions)+2)
	for k, v := range global {
		m[k] = v
	}
	m["email"] = r.Email
	if r.Name != "" {
		m["name"] = r.Name
	}
	for k, v := range r.Substitutions {
		m[k] = v
	}
	return m
}

// execText renders t into a string; a nil template renders "".
func execText(t *tmpl, data map[string]any, buf *bytes.Buffer) (string, error) {
	if t == nil {
		return "", nil
	}
	if err := t.execute(buf, MaxMessage, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// MaxMessage bounds one rendered part or message by default, as the SMTP
// listener's default max-message-size does: a template loop cannot fill
// the memory.
const MaxMessage = 50 << 20

// capped is a buffer that refuses to grow past max bytes.
type capped struct {
	b   *bytes.Buffer
	max int
}

func (c capped) Write(p []byte) (int, error) {
	if c.b.Len()+len(p) > c.max {
		return 0, fmt.Errorf("rendered message larger than %d bytes", c.max)
	}
	return c.b.Write(p)
}
