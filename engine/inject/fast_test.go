package inject

import (
	"bytes"
	htemplate "html/template"
	"strings"
	"testing"
	ttemplate "text/template"
)

// render runs t through the fast path when it has one, and through the
// template engine, and returns both results.
func renderBoth(t *testing.T, tm *tmpl, data map[string]any) (fast, slow string, fastErr, slowErr error) {
	t.Helper()
	var a, b bytes.Buffer
	fastErr = tm.execute(&a, MaxMessage, data)
	slowErr = tm.slow.Execute(capped{&b, MaxMessage}, data)
	return a.String(), b.String(), fastErr, slowErr
}

func TestFastTemplateMatchesEngine(t *testing.T) {
	data := map[string]any{
		"name": `Ann "A+B" <ann> & 'co'` + "\x00 ünï €", "code": "C1\nline", "n": 3.5, "flag": true,
		"nested": map[string]any{"x": "y"},
	}
	cases := []struct {
		name, src string
		html      bool
		fast      bool // expect a fast path
	}{
		{"text fields", "Hello {{.name}},\r\ncode {{.code}}.", false, true},
		{"text trim", "Hello {{- .name -}} !", false, true},
		{"text no fields", "plain", false, true},
		{"text number", "n={{.n}} flag={{.flag}}", false, true}, // falls back per value
		{"text missing", "x {{.missing}}", false, true},         // the engine's error
		{"text if", "{{if .name}}yes{{end}}", false, false},
		{"text nested", "{{.nested.x}}", false, false},
		{"text func", "{{printf \"%q\" .name}}", false, false},
		{"text var", "{{$x := .name}}{{$x}}", false, false},
		{"html text", "<p>Hello {{.name}}</p><b>{{.code}}</b>", true, true},
		{"html comment stripped", "<!-- hidden -->{{.name}}", true, true},
		{"html attribute", `<a title="{{.name}}">x</a>`, true, false},
		{"html url", `<a href="https://x.test/?u={{.name}}">x</a>`, true, false},
		{"html script", `<script>var a = {{.name}};</script>`, true, false},
		{"html rcdata", `<title>{{.name}}</title>`, true, false},
		{"html number", "<p>{{.n}}</p>", true, true},
		{"html unclosed, no fields", `<a href="`, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tm *tmpl
			if c.html {
				h, err := htemplate.New("h").Option("missingkey=error").Parse(c.src)
				if err != nil {
					t.Fatal(err)
				}
				tm = newHTMLTmpl(h, MaxMessage)
			} else {
				tt, err := ttemplate.New("t").Option("missingkey=error").Parse(c.src)
				if err != nil {
					t.Fatal(err)
				}
				tm = newTextTmpl(tt)
			}
			if got := tm.fast != nil; got != c.fast {
				t.Fatalf("fast path %v, want %v", got, c.fast)
			}
			fast, slow, fe, se := renderBoth(t, tm, data)
			if (fe == nil) != (se == nil) || fe != nil && fe.Error() != se.Error() {
				t.Fatalf("errors differ: %v / %v", fe, se)
			}
			if fast != slow {
				t.Fatalf("output differs:\nfast %q\nslow %q", fast, slow)
			}
		})
	}
}

func TestFastTemplateSizeLimit(t *testing.T) {
	tt := ttemplate.Must(ttemplate.New("t").Option("missingkey=error").Parse("{{.a}}{{.a}}"))
	tm := newTextTmpl(tt)
	var buf bytes.Buffer
	err := tm.execute(&buf, 10, map[string]any{"a": strings.Repeat("x", 6)})
	if err == nil || !strings.Contains(err.Error(), "larger than 10 bytes") {
		t.Fatalf("err = %v, want the size limit", err)
	}
}

// FuzzHTMLEscape checks that the fast path escapes any string in HTML
// text exactly as html/template does.
func FuzzHTMLEscape(f *testing.F) {
	for _, s := range []string{"", "plain", `<a href="x">&amp;'+'</a>`, "\x00\xff\xfe", "ünï €\uFFFD\uFDD0", "a+b=c"} {
		f.Add(s)
	}
	h := htemplate.Must(htemplate.New("h").Option("missingkey=error").Parse("<p>{{.x}}</p>"))
	tm := newHTMLTmpl(h, MaxMessage)
	if tm.fast == nil {
		f.Fatal("no fast path")
	}
	f.Fuzz(func(t *testing.T, s string) {
		var fast, slow bytes.Buffer
		data := map[string]any{"x": s}
		if !tm.executeFast(&fast, MaxMessage, data) {
			t.Fatal("fast path refused a string")
		}
		if err := h.Execute(&slow, data); err != nil {
			t.Fatal(err)
		}
		if fast.String() != slow.String() {
			t.Fatalf("%q: fast %q, html/template %q", s, fast.String(), slow.String())
		}
	})
}
