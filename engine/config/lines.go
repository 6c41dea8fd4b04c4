package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// BurntSushi/toml v1.6.0 keeps key positions private (MetaData has no
// position API), and it keys them by a path without array indexes, so the
// line it reports for a key of the second [[source]] is that of the last one.
// keyIndex recovers the line of every key with a small scanner over the
// already parsed file, naming array-of-tables elements by index.

// keyLine is one place where the file sets a key or opens a table.
type keyLine struct {
	path  string // with indexes: source[1].cidr, domain."*".route
	plain string // toml.Key form, without indexes: source.cidr
	line  int    // 1-based
	raw   string // the value as written, for key = value; "" for headers
}

// keyIndex maps keys to the lines that set them.
type keyIndex struct {
	all    []keyLine      // in file order
	byPath map[string]int // first line of each indexed path
}

// seg is one segment of an indexed path; idx is -1 outside arrays of tables.
type seg struct {
	name string
	idx  int
}

func renderPath(segs []seg) string {
	var b strings.Builder
	for i, s := range segs {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(quoteKey(s.name))
		if s.idx >= 0 {
			fmt.Fprintf(&b, "[%d]", s.idx)
		}
	}
	return b.String()
}

func plainPath(segs []seg) string {
	k := make(toml.Key, len(segs))
	for i, s := range segs {
		k[i] = s.name
	}
	return k.String()
}

// quoteKey writes one key segment as TOML (and toml.Key.String) would: bare
// when it can be, quoted otherwise.
func quoteKey(name string) string {
	return toml.Key{name}.String()
}

// lineOf returns the line of path or, if the file does not set it (a key
// inside an inline table, a default), of its nearest ancestor; 0 if none.
func (ix *keyIndex) lineOf(path string) int {
	for path != "" {
		if l, ok := ix.byPath[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// find returns where the file sets the un-indexed key plain, or if it never
// does, where it sets its nearest ancestor.
func (ix *keyIndex) find(plain string) []keyLine {
	for plain != "" {
		var out []keyLine
		for _, k := range ix.all {
			if k.plain == plain {
				out = append(out, k)
			}
		}
		if out != nil {
			return out
		}
		plain = parentPath(plain)
	}
	return nil
}

// parentPath drops the last segment ("a.b" or "a[1]") of a rendered path.
func parentPath(p string) string {
	cut, quoted := 0, false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == '.' || c == '['):
			cut = i
		}
	}
	return p[:cut]
}

// scanner walks TOML source just far enough to see keys and table headers.
// It never fails: input it cannot follow yields fewer keys, never a panic.
type scanner struct {
	s      string
	i      int
	line   int
	ctx    []seg
	arrays map[string]int // indexed path of an array of tables → elements so far
	ix     *keyIndex
}

func scanKeys(src string) *keyIndex {
	sc := &scanner{s: src, line: 1, arrays: map[string]int{}, ix: &keyIndex{byPath: map[string]int{}}}
	for sc.i < len(sc.s) {
		switch c := sc.s[sc.i]; c {
		case ' ', '\t', '\r':
			sc.i++
		case '\n':
			sc.line++
			sc.i++
		case '#':
			sc.skipLine()
		case '[':
			sc.header()
		default:
			sc.keyValue()
		}
	}
	return sc.ix
}

func (sc *scanner) record(segs []seg, raw string) {
	p := renderPath(segs)
	sc.ix.all = append(sc.ix.all, keyLine{path: p, plain: plainPath(segs), line: sc.line, raw: raw})
	if _, ok := sc.ix.byPath[p]; !ok {
		sc.ix.byPath[p] = sc.line
	}
}

// skipLine moves to the next newline without consuming it.
func (sc *scanner) skipLine() {
	for sc.i < len(sc.s) && sc.s[sc.i] != '\n' {
		sc.i++
	}
}

func (sc *scanner) skipBlanks() {
	for sc.i < len(sc.s) && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
		sc.i++
	}
}

// header handles [a.b] and [[a.b]].
func (sc *scanner) header() {
	sc.i++ // '['
	array := sc.i < len(sc.s) && sc.s[sc.i] == '['
	if array {
		sc.i++
	}
	names := sc.keys()
	line := sc.line
	sc.skipLine()
	if len(names) == 0 {
		return
	}
	segs := make([]seg, 0, len(names))
	for j, name := range names {
		s := seg{name: name, idx: -1}
		prefix := renderPath(append(segs, s))
		n, seen := sc.arrays[prefix]
		switch {
		case array && j == len(names)-1:
			s.idx = n
			sc.arrays[prefix] = n + 1
		case seen:
			s.idx = n - 1 // [a.b] under [[a]] belongs to the latest a
		}
		segs = append(segs, s)
	}
	sc.ctx = segs
	saved := sc.line
	sc.line = line
	sc.record(segs, "")
	sc.line = saved
}

// keyValue handles a = 1, a.b = "x" and multi-line values.
func (sc *scanner) keyValue() {
	start := sc.i
	names := sc.keys()
	sc.skipBlanks()
	if len(names) == 0 || sc.i >= len(sc.s) || sc.s[sc.i] != '=' {
		if sc.i == start {
			sc.i++ // always make progress
		}
		sc.skipLine()
		return
	}
	sc.i++ // '='
	sc.skipBlanks()
	line := sc.line
	raw := sc.value()
	segs := append([]seg(nil), sc.ctx...)
	saved := sc.line
	sc.line = line
	for j, name := range names {
		segs = append(segs, seg{name: name, idx: -1})
		if j == len(names)-1 {
			sc.record(segs, raw)
		} else if _, ok := sc.ix.byPath[renderPath(segs)]; !ok {
			sc.record(segs, "")
		}
	}
	sc.line = saved
}

// keys reads a dotted key: bare, "basic" or 'literal' segments.
func (sc *scanner) keys() []string {
	var names []string
	for {
		sc.skipBlanks()
		if sc.i >= len(sc.s) {
			return names
		}
		switch c := sc.s[sc.i]; {
		case c == '"' || c == '\'':
			start := sc.i
			sc.str(c)
			raw := sc.s[start:sc.i]
			name := strings.Trim(raw, string(c))
			if c == '"' {
				if u, err := strconv.Unquote(raw); err == nil {
					name = u
				}
			}
			names = append(names, name)
		case isBare(c):
			start := sc.i
			for sc.i < len(sc.s) && isBare(sc.s[sc.i]) {
				sc.i++
			}
			names = append(names, sc.s[start:sc.i])
		default:
			return names
		}
		sc.skipBlanks()
		if sc.i >= len(sc.s) || sc.s[sc.i] != '.' {
			return names
		}
		sc.i++
	}
}

func isBare(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value skips one value, which may span lines (arrays, multi-line strings),
// and returns its text without a trailing comment.
func (sc *scanner) value() string {
	start, end, depth := sc.i, -1, 0
	for sc.i < len(sc.s) {
		c := sc.s[sc.i]
		switch {
		case c == '"' || c == '\'':
			sc.str(c)
			continue
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
		case c == '#':
			if depth <= 0 && end < 0 {
				end = sc.i
			}
			sc.skipLine()
			continue
		case c == '\n':
			if depth <= 0 {
				if end < 0 {
					end = sc.i
				}
				return strings.TrimSpace(sc.s[start:end])
			}
			sc.line++
		}
		sc.i++
	}
	if end < 0 {
		end = len(sc.s)
	}
	return strings.TrimSpace(sc.s[start:end])
}

// str skips a string starting at sc.i with quote q, single or triple.
func (sc *scanner) str(q byte) {
	triple := strings.HasPrefix(sc.s[sc.i:], strings.Repeat(string(q), 3))
	if triple {
		sc.i += 3
	} else {
		sc.i++
	}
	for sc.i < len(sc.s) {
		c := sc.s[sc.i]
		switch {
		case c == '\\' && q == '"':
			if sc.i+1 < len(sc.s) && sc.s[sc.i+1] == '\n' {
				sc.line++
			}
			sc.i += 2
			continue
		case c == '\n':
			if !triple {
				return // unterminated; let the caller see the newline
			}
			sc.line++
		case c == q:
			if !triple {
				sc.i++
				return
			}
			if strings.HasPrefix(sc.s[sc.i:], strings.Repeat(string(q), 3)) {
				sc.i += 3
				for n := 0; n < 2 && sc.i < len(sc.s) && sc.s[sc.i] == q; n++ {
					sc.i++ // """a"""" ends with a quote in the content
				}
				return
			}
		}
		sc.i++
	}
	if sc.i > len(sc.s) {
		sc.i = len(sc.s)
	}
}
