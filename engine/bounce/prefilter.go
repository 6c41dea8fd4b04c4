package bounce

import (
	"regexp"
	"regexp/syntax"
	"strings"
)

// Go's regexp runs an unanchored alternation of dozens of phrases as an NFA
// over every position of the text, which made one Classify cost about a
// millisecond. A rule's pattern is therefore paired with the literals a
// match must start with ("user unknown", "no such", "quota" …), extracted
// from the parsed pattern; the regexp runs only when the lower-cased text
// contains one of them. Patterns whose matches can start with anything get
// no prefilter and always run.

// maxLits caps the size of a literal set while it is being built.
const maxLits = 64

// compiledRule is a Rule with its prefilter.
type compiledRule struct {
	Rule
	lits []string // lower-case; nil: no prefilter, always run the regexp
}

// compile pairs each rule with its prefilter.
func compile(rules []Rule) []compiledRule {
	out := make([]compiledRule, 0, len(rules))
	for _, r := range rules {
		if r.Pattern != nil {
			out = append(out, compiledRule{Rule: r, lits: prefixLiterals(r.Pattern)})
		}
	}
	return out
}

// match reports whether the rule matches text; lower is lowerFold(text).
func (r *compiledRule) match(text, lower string) bool {
	return r.mayMatch(lower) && r.Pattern.MatchString(text)
}

// mayMatch is the prefilter: false means the pattern cannot match.
func (r *compiledRule) mayMatch(lower string) bool {
	if r.lits == nil {
		return true
	}
	for _, l := range r.lits {
		if strings.Contains(lower, l) {
			return true
		}
	}
	return false
}

// prefixLiterals returns lower-case ASCII strings such that every match of
// re starts with one of them, or nil if it cannot tell. The strings are to be
// looked for in lowerFold(text).
func prefixLiterals(re *regexp.Regexp) []string {
	p, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return nil
	}
	set, _, ok := lits(p)
	if !ok {
		return nil
	}
	for _, s := range set {
		if s == "" { // a match may start anywhere
			return nil
		}
	}
	return set
}

// lits returns the set of strings that every match of re starts with
// (exact: the set is every string re can match), or ok=false.
func lits(re *syntax.Regexp) (set []string, exact, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		s, ok := foldLiteral(re.Rune)
		return []string{s}, true, ok
	case syntax.OpCharClass:
		return charClass(re)
	case syntax.OpCapture:
		return lits(re.Sub[0])
	case syntax.OpEmptyMatch, syntax.OpWordBoundary, syntax.OpNoWordBoundary,
		syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText:
		return []string{""}, true, true
	case syntax.OpQuest:
		s, ex, ok := lits(re.Sub[0])
		if !ok {
			return []string{""}, false, true
		}
		return union(s, []string{""}), ex, true
	case syntax.OpPlus:
		s, _, ok := lits(re.Sub[0])
		return s, false, ok
	case syntax.OpRepeat:
		if re.Min == 0 {
			return []string{""}, false, true
		}
		s, _, ok := lits(re.Sub[0])
		return s, false, ok
	case syntax.OpStar:
		return []string{""}, false, true
	case syntax.OpAlternate:
		exact = true
		for _, sub := range re.Sub {
			s, ex, ok := lits(sub)
			if !ok {
				return nil, false, false
			}
			set, exact = union(set, s), exact && ex
		}
		if len(set) > maxLits {
			return shrink(set)
		}
		return set, exact, true
	case syntax.OpConcat:
		set, exact = []string{""}, true
		for _, sub := range re.Sub {
			s, ex, ok := lits(sub)
			if !ok {
				return set, false, true
			}
			next := cross(set, s)
			if len(next) > maxLits {
				return set, false, true
			}
			set = next
			if !ex {
				return set, false, true
			}
		}
		return set, exact, true
	}
	return nil, false, false
}

// charClass expands a small character class: (?i)[ae] is {"a", "e"}.
func charClass(re *syntax.Regexp) ([]string, bool, bool) {
	var set []string
	for i := 0; i < len(re.Rune); i += 2 {
		for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
			if r >= 0x80 || len(set) > 8 {
				return nil, false, false
			}
			set = union(set, []string{strings.ToLower(string(r))})
		}
	}
	return set, true, len(set) > 0
}

// foldLiteral returns the lower-case form of an ASCII literal. Whether the
// literal is case-sensitive or not, text it matches contains it when both are
// lower-cased.
func foldLiteral(rs []rune) (string, bool) {
	b := make([]byte, 0, len(rs))
	for _, r := range rs {
		if r >= 0x80 {
			return "", false
		}
		if r >= 'A' && r <= 'Z' {
			r += 'a' - 'A'
		}
		b = append(b, byte(r))
	}
	return string(b), true
}

// lowerFold lower-cases s for the prefilter. Besides strings.ToLower it maps
// U+017F (long s), the one rune that (?i) matches to an ASCII letter and that
// ToLower leaves alone (the Kelvin sign already lowers to k).
func lowerFold(s string) string {
	s = strings.ToLower(s)
	if strings.ContainsRune(s, '\u017f') {
		s = strings.ReplaceAll(s, "\u017f", "s")
	}
	return s
}

// shrink cuts the strings of a set too large to a common shorter length
// until it fits: each match still starts with one of the shortened strings.
func shrink(set []string) ([]string, bool, bool) {
	for n := 8; n >= 2; n-- {
		var out []string
		for _, s := range set {
			out = union(out, []string{s[:min(n, len(s))]})
			if len(out) > maxLits {
				break
			}
		}
		if len(out) <= maxLits {
			return out, false, true
		}
	}
	return nil, false, false
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, s := range b {
		dup := false
		for _, t := range out {
			if s == t {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, s)
		}
	}
	return out
}

func cross(a, b []string) []string {
	var out []string
	for _, x := range a {
		for _, y := range b {
			out = union(out, []string{x + y})
		}
	}
	return out
}
