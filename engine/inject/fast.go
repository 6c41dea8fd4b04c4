package inject

import (
	"bytes"
	"errors"
	htemplate "html/template"
	"io"
	ttemplate "text/template"
	"text/template/parse"
)

// tmpl is a compiled template with, when its shape allows, a fast path.
//
// Most campaign templates are text with lone fields ({{.name}}). Go's
// template engine executes those through reflection, which was a sixth of
// the CPU of an HTTP injection; the fast path writes the text and looks
// the fields up in the data map directly. It produces the same bytes as
// the engine, and hands anything it does not cover (a missing key, a value
// that is not a string, a message over the size limit) to the engine,
// which also words the errors.
type tmpl struct {
	slow interface{ Execute(io.Writer, any) error }
	fast []segment // nil: the template has more than text and lone fields
}

// segment is literal text, or the value of one field of the data.
type segment struct {
	text  string
	field string // the data key, when this is a field
	html  bool   // escape the value as html/template does in HTML text
}

// execute renders the template into buf (reset first), refusing output
// over max bytes.
func (t *tmpl) execute(buf *bytes.Buffer, max int, data map[string]any) error {
	buf.Reset()
	if t.fast != nil && t.executeFast(buf, max, data) {
		return nil
	}
	buf.Reset()
	return t.slow.Execute(capped{buf, max}, data)
}

// executeFast renders the segments; false means the engine must do it.
func (t *tmpl) executeFast(buf *bytes.Buffer, max int, data map[string]any) bool {
	for _, s := range t.fast {
		if s.field == "" {
			buf.WriteString(s.text)
		} else {
			v, ok := data[s.field].(string)
			if !ok {
				return false
			}
			if s.html {
				writeHTMLEscaped(buf, v)
			} else {
				buf.WriteString(v)
			}
		}
		if buf.Len() > max {
			return false
		}
	}
	return true
}

// newTextTmpl wraps a parsed text/template.
func newTextTmpl(t *ttemplate.Template) *tmpl {
	return &tmpl{slow: t, fast: segments(t.Tree, "")}
}

// newHTMLTmpl wraps a parsed html/template. The fast path needs the tree
// html/template has escaped, which it does at the first execution: one
// is run here with no data (its output and errors are not used; a template
// that cannot be escaped keeps no fast path and fails per recipient as
// before).
func newHTMLTmpl(h *htemplate.Template, max int) *tmpl {
	var sink bytes.Buffer
	t := &tmpl{slow: h}
	var escErr *htemplate.Error
	if err := h.Execute(capped{&sink, max}, nil); !errors.As(err, &escErr) {
		t.fast = segments(h.Tree, htmlEscaperName)
	}
	return t
}

// htmlEscaperName is the function html/template puts after a value
// printed in HTML text: {{.x}} becomes {{.x | _html_template_htmlescaper}}.
const htmlEscaperName = "_html_template_htmlescaper"

// segments returns the template as text and lone fields, or nil when it
// has anything else (conditions, loops, functions, variables, nested
// fields). With escaper set, each field must be followed by exactly that
// escaper, and nothing else.
func segments(tree *parse.Tree, escaper string) []segment {
	if tree == nil || tree.Root == nil {
		return nil
	}
	out := []segment{}
	for _, n := range tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			out = append(out, segment{text: string(n.Text)})
		case *parse.ActionNode:
			field, ok := loneField(n.Pipe, escaper)
			if !ok {
				return nil
			}
			out = append(out, segment{field: field, html: escaper != ""})
		default:
			return nil
		}
	}
	return out
}

// loneField returns NAME when pipe is just .NAME (then the escaper, when
// one is expected).
func loneField(pipe *parse.PipeNode, escaper string) (string, bool) {
	if pipe == nil || len(pipe.Decl) > 0 || pipe.IsAssign {
		return "", false
	}
	want := 1
	if escaper != "" {
		want = 2
	}
	if len(pipe.Cmds) != want || len(pipe.Cmds[0].Args) != 1 {
		return "", false
	}
	f, ok := pipe.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok || len(f.Ident) != 1 {
		return "", false
	}
	if escaper != "" {
		c := pipe.Cmds[1]
		id, ok := c.Args[0].(*parse.IdentifierNode)
		if len(c.Args) != 1 || !ok || id.Ident != escaper {
			return "", false
		}
	}
	return f.Ident[0], true
}

// htmlEscapes are html/template's replacements for a plain string printed
// in HTML text; every other byte is copied. The bytes replaced are ASCII,
// which never occurs inside a multi-byte UTF-8 sequence, so replacing
// bytes is the same as replacing runes.
var htmlEscapes = [...]string{
	0:    "\uFFFD",
	'"':  "&#34;",
	'&':  "&amp;",
	'\'': "&#39;",
	'+':  "&#43;",
	'<':  "&lt;",
	'>':  "&gt;",
}

// writeHTMLEscaped writes s escaped as html/template escapes a string in
// HTML text.
func writeHTMLEscaped(buf *bytes.Buffer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if int(c) >= len(htmlEscapes) || htmlEscapes[c] == "" {
			continue
		}
		buf.WriteString(s[last:i])
		buf.WriteString(htmlEscapes[c])
		last = i + 1
	}
	buf.WriteString(s[last:])
}
