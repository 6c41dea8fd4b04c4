package fbl_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/fbl/arf"
	"github.com/sluice-mta/sluice/fbl/dsn"
	"github.com/sluice-mta/sluice/fbl/trace"
)

// entry is one line of testdata/MANIFEST.tsv, the corpus's answer key (see
// testdata/README.md): recipient and status lists are comma-separated in
// order; "unknown" means the file does not state the value, and an empty
// field means it does not apply.
type entry struct {
	file, kind, rcpt, status, feedbackType, notes string
}

func readManifest(t *testing.T) []entry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	var out []entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 7 {
			t.Fatalf("MANIFEST.tsv: %d columns in %q", len(f), line)
		}
		out = append(out, entry{file: f[0], kind: f[2], rcpt: f[3], status: f[4], feedbackType: f[5], notes: f[6]})
	}
	if len(out) == 0 {
		t.Fatal("MANIFEST.tsv is empty")
	}
	return out
}

// sameList compares comma-separated lists, addresses without case.
func sameList(want string, got []string) bool {
	return strings.EqualFold(want, strings.Join(got, ","))
}

// statusKey turns the key's "unknown" entries into "", which is what a
// parser reports for a status the file does not state.
func statusKey(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if p == "unknown" {
			parts[i] = ""
		}
	}
	return strings.Join(parts, ",")
}

type score struct{ ok, n int }

func (s *score) add(ok bool) {
	s.n++
	if ok {
		s.ok++
	}
}

func (s score) pct() float64 {
	if s.n == 0 {
		return 0
	}
	return 100 * float64(s.ok) / float64(s.n)
}

func (s score) String() string { return fmt.Sprintf("%d/%d (%.1f%%)", s.ok, s.n, s.pct()) }

func mark(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}

// TestCorpus runs every file of the corpus through its parser, prints one
// result line per file, and checks the targets of issue 6: at least 95%
// correct recipient and feedback type on the ARF/JMRP reports, at least 90%
// correct recipient and status on the DSNs, and no auto-reply taken for a
// bounce.
func TestCorpus(t *testing.T) {
	keys := trace.Keys{Current: []byte("corpus-test-secret-0123456789")}
	classifier := bounce.NewClassifier(nil)
	var arfRcpt, arfType, dsnRcpt, dsnStatus, autos score
	autoAsBounce, bounceAsAuto := 0, 0

	t.Logf("%-58s %-15s %-4s %-4s %s", "file", "kind", "rcpt", "2nd", "got (want)")
	for _, e := range readManifest(t) {
		f, err := os.Open(filepath.Join("testdata", e.file))
		if err != nil {
			t.Fatal(err)
		}
		switch e.kind {
		case "arf", "jmrp":
			rep, err := arf.Parse(f, keys)
			var rcpts []string
			ftype, format := "", ""
			if err == nil {
				rcpts, ftype, format = rep.Recipients, rep.FeedbackType, rep.Format
			}
			rOK := err == nil && (e.rcpt == "unknown" && len(rcpts) == 0 || sameList(e.rcpt, rcpts))
			// "unknown": the report states no type. A JMRP report is a junk
			// complaint, which arf documents as "abuse"; anything else must
			// stay empty.
			tOK := err == nil && (ftype == e.feedbackType ||
				e.feedbackType == "unknown" && (ftype == "" || format == arf.FormatJMRP && ftype == "abuse"))
			arfRcpt.add(rOK)
			arfType.add(tOK)
			t.Logf("%-58s %-15s %-4s %-4s rcpt=%s type=%s format=%s err=%v (want rcpt=%s type=%s)",
				e.file, e.kind, mark(rOK), mark(tOK), strings.Join(rcpts, ","), ftype, format, err, e.rcpt, e.feedbackType)
		default:
			rep, err := dsn.Parse(f, keys, classifier)
			var finals, statuses, cats []string
			auto := false
			if err == nil {
				auto = rep.AutoReply
				for _, r := range rep.Recipients {
					finals = append(finals, r.Final)
					statuses = append(statuses, r.Status)
					cats = append(cats, r.Category)
				}
			}
			if e.kind == "autoreply" {
				ok := err == nil && auto && len(finals) == 0
				autos.add(ok)
				if !ok {
					autoAsBounce++
				}
				t.Logf("%-58s %-15s %-4s %-4s auto=%v rcpt=%s err=%v (want an auto-reply)",
					e.file, e.kind, mark(ok), "-", auto, strings.Join(finals, ","), err)
				break
			}
			if auto {
				bounceAsAuto++
			}
			rOK := err == nil && !auto && sameList(e.rcpt, finals)
			sOK := err == nil && !auto && strings.Join(statuses, ",") == statusKey(e.status)
			dsnRcpt.add(rOK)
			dsnStatus.add(sOK)
			t.Logf("%-58s %-15s %-4s %-4s rcpt=%s status=%s category=%s err=%v (want rcpt=%s status=%s)",
				e.file, e.kind, mark(rOK), mark(sOK), strings.Join(finals, ","), strings.Join(statuses, ","),
				strings.Join(cats, ","), err, e.rcpt, e.status)
		}
		f.Close()
	}
	t.Logf("ARF/JMRP: recipient %v, feedback type %v", arfRcpt, arfType)
	t.Logf("DSN: recipient %v, status %v", dsnRcpt, dsnStatus)
	t.Logf("auto-replies recognised %v; auto-replies taken as bounces: %d; bounces taken as auto-replies: %d",
		autos, autoAsBounce, bounceAsAuto)

	if arfRcpt.n == 0 || dsnRcpt.n == 0 || autos.n == 0 {
		t.Fatal("the manifest lacks ARF, DSN or auto-reply entries")
	}
	if arfRcpt.pct() < 95 || arfType.pct() < 95 {
		t.Errorf("ARF/JMRP: recipient %v, feedback type %v; want at least 95%% each", arfRcpt, arfType)
	}
	if dsnRcpt.pct() < 90 || dsnStatus.pct() < 90 {
		t.Errorf("DSN: recipient %v, status %v; want at least 90%% each", dsnRcpt, dsnStatus)
	}
	if autoAsBounce != 0 {
		t.Errorf("%d auto-replies taken as bounces, want 0", autoAsBounce)
	}
}
