package bounce

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestPrefixLiterals(t *testing.T) {
	cases := []struct {
		pattern string
		want    []string // nil: no prefilter
	}{
		{`user unknown`, []string{"user unknown"}},
		{`(?i)User Unknown|no such (user|mailbox)`, []string{"user unknown", "no such user", "no such mailbox"}},
		{`gr[ae]y-?list`, []string{"gray-list", "graylist", "grey-list", "greylist"}},
		{`\bjunk\b|spam`, []string{"junk", "spam"}},
		{`(is )?full`, []string{"is full", "full"}},
		{`quota.*exceeded`, []string{"quota"}},
		{`a+b`, []string{"a"}},
		{`.*x`, nil},
		{`x|.y`, nil},
		{`(\w+ )?account`, nil},
		{`[a-z]+ box`, nil},
		{`é`, nil},
		{`^550 5\.1\.1 `, []string{"550 5.1.1 "}},
	}
	for _, c := range cases {
		got := prefixLiterals(regexp.MustCompile(c.pattern))
		slices.Sort(got)
		slices.Sort(c.want)
		if !slices.Equal(got, c.want) {
			t.Errorf("prefixLiterals(%q) = %q, want %q", c.pattern, got, c.want)
		}
	}
	// A large alternation is cut to shorter prefixes rather than dropped.
	var alts []string
	for i := range 100 {
		alts = append(alts, "word"+strings.Repeat("x", i%10)+string(rune('a'+i/10))+" tail")
	}
	lits := prefixLiterals(regexp.MustCompile(strings.Join(alts, "|")))
	if lits == nil || len(lits) > maxLits {
		t.Errorf("large alternation: %d literals", len(lits))
	}
	for _, l := range lits {
		if !strings.HasPrefix(alts[0], l[:4]) {
			t.Errorf("literal %q", l)
		}
	}
}

// TestBuiltinPrefilters checks that every built-in rule has a prefilter and
// that, on every text of the tests, the prefilter never rules out a match.
func TestBuiltinPrefilters(t *testing.T) {
	for _, r := range builtinText {
		if r.lits == nil {
			t.Errorf("%s rule %.40q... has no prefilter", r.Category, r.Pattern)
		}
		if p := r.Pattern.String(); p != strings.ToLower(p) {
			t.Errorf("%s rule %.40q... is not lower case", r.Category, p)
		}
	}
	var texts []string
	for _, c := range classifyCases {
		texts = append(texts, c.reply)
	}
	for _, c := range loadCorpus(t) {
		texts = append(texts, c.diag)
	}
	for _, text := range texts {
		checkPrefilters(t, text)
	}
}

func checkPrefilters(t *testing.T, text string) {
	t.Helper()
	lower := lowerFold(normalize(text))
	for _, r := range builtinText {
		if r.Pattern.MatchString(lower) && !r.mayMatch(lower) {
			t.Errorf("%s prefilter %q rules out %q", r.Category, r.lits, text)
		}
	}
}
