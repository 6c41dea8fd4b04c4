// Package inject is campaign injection over HTTP: a JSON request carries a
// template (structured content, or a raw RFC 5322 message with template
// fields), global substitutions and up to MaxRecipients recipients with
// their own values. Each recipient gets its own rendered MIME message;
// every accepted message passes engine/submit (transforms, then one synced
// spool commit for the request) before the reply is sent, so a 200 means
// "fsynced" exactly as SMTP's 250 does (RFC 5321 §6.1). A request refused
// as a whole (400) queues nothing.
package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxRecipients is the most recipients one request may carry.
const MaxRecipients = 10000

// Request is the body of POST /api/v1/inject.
type Request struct {
	EnvelopeSender string         `json:"envelope_sender"`
	Job            string         `json:"job"`
	VirtualMTA     string         `json:"virtual_mta"`
	Content        Content        `json:"content"`
	Substitutions  map[string]any `json:"substitutions"`
	Recipients     []Recipient    `json:"recipients"`
}

// Content is the message template: either structured fields or Raw, a
// whole RFC 5322 message (JSON string) whose text is one template.
type Content struct {
	Raw string `json:"-"`

	From        string            `json:"from"`
	ReplyTo     string            `json:"reply_to"`
	To          string            `json:"to"` // default: the recipient (with its name)
	Subject     string            `json:"subject"`
	TextBody    string            `json:"text_body"`
	HTMLBody    string            `json:"html_body"`
	Headers     map[string]string `json:"headers"`
	Attachments []Attachment      `json:"attachments"`
}

// Attachment is a file sent base64-encoded in a multipart/mixed message.
type Attachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Data        []byte `json:"data_base64"` // JSON base64 (RFC 4648 §4)
}

// Recipient is one addressee and the values that override the global ones.
type Recipient struct {
	Email         string         `json:"email"`
	Name          string         `json:"name"`
	Substitutions map[string]any `json:"substitutions"`
}

// UnmarshalJSON accepts a JSON string (a raw message) or an object.
func (c *Content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*c = Content{}
		return json.Unmarshal(b, &c.Raw)
	}
	type plain Content // no UnmarshalJSON: no recursion
	var p plain
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil {
		if f, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
			return fmt.Errorf(`json: unknown field "content.%s`, f)
		}
		return err
	}
	*c = Content(p)
	return nil
}

// Structured reports whether c is the structured form.
func (c *Content) Structured() bool { return c.Raw == "" }

// RequestError is a request refused as a whole: the HTTP status (400, or
// 413 for a body too large) and what to tell the client, naming the field
// and, for templates, the line.
type RequestError struct {
	Status int
	Field  string // e.g. "recipients[3].email", "content.subject"
	Line   int    // template line, 1-based; 0 when not applicable
	Msg    string
}

func (e *RequestError) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Line > 0 {
			fmt.Fprintf(&b, " line %d", e.Line)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func badRequest(field, format string, args ...any) *RequestError {
	return &RequestError{Status: 400, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Decode parses and checks a request body. Unknown fields, trailing data,
// wrong types and missing required fields are *RequestError values naming
// the field; a syntax error names the line and column of the body.
func Decode(body []byte) (*Request, error) {
	var req Request
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		return nil, jsonError(body, err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, badRequest("", "malformed JSON: data after the request object")
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	return &req, nil
}

// jsonError explains a decoding error in terms of the request.
func jsonError(body []byte, err error) *RequestError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := position(body, se.Offset)
		return badRequest("", "malformed JSON at line %d column %d: %v", line, col, se)
	case errors.As(err, &te):
		f := te.Field
		if f == "" {
			f = "request"
		}
		return badRequest(f, "expected %s, got JSON %s", te.Type, te.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "malformed JSON: unexpected end of the body")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return badRequest(strings.Trim(f, `"`), "unknown field")
	}
	if strings.Contains(msg, "illegal base64") {
		return badRequest("content.attachments.data_base64", "invalid base64")
	}
	return badRequest("", "malformed JSON: %s", strings.TrimPrefix(msg, "json: "))
}

// position turns a byte offset into a 1-based line and column.
func position(b []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(b)))
	before := b[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// check validates what decoding cannot: required fields and limits.
func (r *Request) check() *RequestError {
	if r.EnvelopeSender != "" {
		if err := CheckAddress(r.EnvelopeSender); err != nil {
			return badRequest("envelope_sender", "%v", err)
		}
	} else {
		return badRequest("envelope_sender", "required")
	}
	if strings.ContainsAny(r.Job, "\r\n") {
		return badRequest("job", "must be one line")
	}
	c := &r.Content
	if c.Structured() {
		if c.TextBody == "" && c.HTMLBody == "" {
			return badRequest("content", "required: text_body or html_body, or a raw message as a string")
		}
		if c.From == "" {
			return badRequest("content.from", "required")
		}
		for k := range c.Headers {
			if !validFieldName(k) {
				return badRequest("content.headers."+k, "invalid header field name (RFC 5322 §3.6.8)")
			}
			if reserved(k) {
				return badRequest("content.headers."+k, "set by Sluice or by its own content field")
			}
		}
		for i, a := range c.Attachments {
			if a.Filename == "" {
				return badRequest(fmt.Sprintf("content.attachments[%d].filename", i), "required")
			}
			if strings.ContainsAny(a.ContentType, "\r\n") {
				return badRequest(fmt.Sprintf("content.attachments[%d].content_type", i), "must be one line")
			}
		}
	}
	if len(r.Recipients) == 0 {
		return badRequest("recipients", "required: at least one recipient")
	}
	if len(r.Recipients) > MaxRecipients {
		return badRequest("recipients", "%d recipients, at most %d per request", len(r.Recipients), MaxRecipients)
	}
	return nil
}

// validFieldName is RFC 5322 §3.6.8 ftext: printable ASCII except colon.
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 33 || k[i] > 126 || k[i] == ':' {
			return false
		}
	}
	return true
}

// reserved lists the fields built from the structured content or added by
// the builder, which content.headers may not set.
func reserved(k string) bool {
	switch strings.ToLower(k) {
	case "from", "to", "subject", "reply-to", "date", "message-id", "mime-version",
		"content-type", "content-transfer-encoding", "received":
		return true
	}
	return false
}
