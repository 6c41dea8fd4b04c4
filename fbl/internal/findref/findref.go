// Package findref recovers Sluice's trace header from a report (a complaint
// or a bounce) and checks it. The header is looked for in the returned
// original first, then in any embedded header block, then in lines of text
// that quote it. The first value that authenticates wins; values that are
// present but never authenticate mark the report as forged.
package findref

import (
	"bytes"
	"regexp"
	"strings"

	"github.com/sluice-mta/sluice/fbl/internal/mailmsg"
	"github.com/sluice-mta/sluice/fbl/trace"
)

var htmlTag = regexp.MustCompile(`<[^>]{0,200}>`)

// maxCandidates bounds the HMAC work one report can cause.
const maxCandidates = 16

// Find looks for header name (trace.HeaderName when empty) in original's
// header (original may be nil), then anywhere in root, and decodes the
// candidates with k. It returns the first Ref that authenticates; forged is
// true when candidates were found and none authenticated.
func Find(original, root *mailmsg.Part, name string, k trace.Keys) (ref *trace.Ref, forged bool) {
	if name == "" {
		name = trace.HeaderName
	}
	var cands []string
	add := func(v string) {
		v = strings.TrimSpace(v)
		for i := 0; i < len(v); i++ { // a value is base64url: stop at anything else ("<br>", a comment)
			if c := v[i]; !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				v = v[:i]
				break
			}
		}
		if v != "" && len(cands) < maxCandidates && !contains(cands, v) {
			cands = append(cands, v)
		}
	}
	if original != nil {
		for _, v := range original.Header.Values(name) {
			add(v)
		}
	}
	root.Walk(func(p *mailmsg.Part) bool {
		if p != root { // the report's own header is not about the original
			for _, v := range p.Header.Values(name) {
				add(v)
			}
		}
		switch {
		case p.IsText():
			scanLines(p.Body, name, add)
		case p.MediaType == "text/html": // a header quoted in an HTML notice
			scanLines(htmlTag.ReplaceAll(p.Body, nil), name, add)
		}
		return len(cands) < maxCandidates
	})
	for _, v := range cands {
		if r, err := trace.Decode(v, k); err == nil {
			return &r, false
		}
	}
	return nil, len(cands) > 0
}

// scanLines calls add with the value of every line of b that starts with
// "name:" (any case, leading white space allowed).
func scanLines(b []byte, name string, add func(string)) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimLeft(line, " \t>")
		if len(line) > len(name) && line[len(name)] == ':' && strings.EqualFold(string(line[:len(name)]), name) {
			add(string(line[len(name)+1:]))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
