package bounce

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/engine/reply"
)

// diagLine is one Diagnostic-Code field of a corpus file, with the index of
// the per-recipient group it belongs to.
type diagLine struct {
	rcpt int
	diag string
}

// diagnostics returns the unfolded Diagnostic-Code fields of a message,
// whatever its line endings (LF, CRLF or CR), each tied to the last
// Final-Recipient field before it.
func diagnostics(raw []byte) []diagLine {
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	raw = bytes.ReplaceAll(raw, []byte("\r"), []byte("\n"))
	var lines []string
	for _, l := range strings.Split(string(raw), "\n") {
		if len(lines) > 0 && l != "" && (l[0] == ' ' || l[0] == '\t') {
			lines[len(lines)-1] += " " + strings.TrimSpace(l) // RFC 5322 §2.2.3 unfolding
			continue
		}
		lines = append(lines, l)
	}
	var out []diagLine
	rcpt := -1
	for _, l := range lines {
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(name) {
		case "final-recipient":
			rcpt++
		case "diagnostic-code":
			out = append(out, diagLine{max(rcpt, 0), strings.TrimSpace(val)})
		}
	}
	return out
}

// corpusWant is the category this package should give each Diagnostic-Code
// of testdata/dsn, keyed "file#recipient". It is a judgement on the reply
// text, and it differs from the manifest's status in places (see
// TestCorpusAgreement).
var corpusWant = map[string]string{
	"01#0": BadMailbox, "03#0": BadMailbox, "04#0": BadMailbox, "05#0": BadMailbox,
	"06#0": BadMailbox, "07#0": BadMailbox, "07#1": BadMailbox, "08#0": BadMailbox,
	"08#1": QuotaIssues, "09#0": QuotaIssues, "10#0": QuotaIssues, "11#0": SpamRelated,
	"12#0": PolicyRelated, "13#0": SpamRelated, "14#0": PolicyRelated, "15#0": BadDomain,
	"16#0": BadMailbox, "17#0": BadMailbox, "19#0": BadMailbox, "21#0": QuotaIssues,
	"23#0": BadMailbox, "23#2": BadMailbox, "26#0": QuotaIssues, "28#0": Other,
	"29#0": NoAnswerFromHost, "31#0": SpamRelated, "32#0": SpamRelated,
}

type corpusCase struct {
	key, file, diag, status string // status: the manifest's, for this recipient
}

func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	f, err := os.Open("testdata/dsn/MANIFEST.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []corpusCase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 5 {
			t.Fatalf("manifest line %q: too few columns", sc.Text())
		}
		raw, err := os.ReadFile(filepath.Join("testdata/dsn", cols[0]))
		if err != nil {
			t.Fatal(err)
		}
		statuses := strings.Split(cols[4], ",")
		for _, d := range diagnostics(raw) {
			st := "unknown"
			if d.rcpt < len(statuses) {
				st = statuses[d.rcpt]
			}
			cases = append(cases, corpusCase{
				key:  cols[0][:2] + "#" + string(rune('0'+d.rcpt)),
				file: cols[0], diag: d.diag, status: st,
			})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

// TestCorpus classifies every Diagnostic-Code of the sample DSNs and checks
// the category judged right for it.
func TestCorpus(t *testing.T) {
	c := NewClassifier(nil)
	cases := loadCorpus(t)
	if len(cases) != len(corpusWant) {
		t.Errorf("found %d Diagnostic-Code fields, corpusWant has %d", len(cases), len(corpusWant))
	}
	for _, k := range cases {
		want, ok := corpusWant[k.key]
		if !ok {
			t.Errorf("%s (%s): no expected category for %q", k.key, k.file, k.diag)
			continue
		}
		if got := c.ClassifyDiagnostic(k.diag); got != want {
			t.Errorf("%s: ClassifyDiagnostic(%q) = %s, want %s", k.key, k.diag, got, want)
		}
	}
}

// TestCorpusAgreement measures agreement with the manifest. The manifest
// gives each recipient's DSN status, not a category, so its category is
// taken to be what the status code alone maps to. Text rules override the
// status by design, so full agreement is not expected; the figure is logged,
// and only a collapse fails the test.
func TestCorpusAgreement(t *testing.T) {
	c := NewClassifier(nil)
	var n, agree, textOnly, specific, specificAgree int
	for _, k := range loadCorpus(t) {
		st, ok := reply.ParseStatus(k.status)
		if !ok {
			continue // "unknown": the manifest gives no answer
		}
		key := statusCategory(st)
		n++
		got := c.ClassifyDiagnostic(k.diag)
		if key != Other { // x.0.0, x.2.0, x.3.0: the status says nothing specific
			specific++
			if got == key {
				specificAgree++
			}
		}
		if got == key {
			agree++
		} else {
			t.Logf("%s: %s, manifest status %s → %s: %q", k.key, got, k.status, key, k.diag)
		}
		// The text rules alone, as if the reply had carried no status.
		_, _, text := ParseDiagnostic(k.diag)
		if c.Classify(0, "", strings.ReplaceAll(text, k.status, "")) == key {
			textOnly++
		}
	}
	pct := func(a, b int) float64 { return 100 * float64(a) / float64(max(b, 1)) }
	t.Logf("agreement with the manifest's status: %d/%d (%.0f%%); where the status maps to a specific category: %d/%d (%.0f%%); text rules alone: %d/%d (%.0f%%)",
		agree, n, pct(agree, n), specificAgree, specific, pct(specificAgree, specific), textOnly, n, pct(textOnly, n))
	if n == 0 || agree*2 < n {
		t.Errorf("agreement %d/%d is below half", agree, n)
	}
}

// FuzzClassifyDiagnostic checks that no input makes the classifier panic and
// that every answer is a known category.
func FuzzClassifyDiagnostic(f *testing.F) {
	files, _ := filepath.Glob("testdata/dsn/*.eml")
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, d := range diagnostics(raw) {
			f.Add(d.diag)
		}
	}
	c := NewClassifier(nil)
	f.Fuzz(func(t *testing.T, diag string) {
		if got := c.ClassifyDiagnostic(diag); !IsCategory(got) {
			t.Fatalf("ClassifyDiagnostic(%q) = %q, not a category", diag, got)
		}
		checkPrefilters(t, diag)
	})
}
