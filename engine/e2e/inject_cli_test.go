package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// runInjectCLI runs `sluice inject args...` and returns its stdout+stderr
// and exit code.
func runInjectCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(testenv.BuildSluice(t), append([]string{"inject"}, args...)...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sluice inject: %v", err)
	}
	return string(out), 0
}

// TestInjectCLI merges 100 CSV rows into a template with `sluice inject`
// over SMTP, interrupted after 40 rows (--limit) and resumed from the
// checkpoint: each row arrives exactly once with its own values, and the
// bad rows are reported by their line. Then 20 more rows over HTTP, with
// the server and token taken from the daemon's config.
func TestInjectCLI(t *testing.T) {
	d := startInjectDaemon(t, 91)
	start := time.Now()
	defer func() { t.Logf("after the daemon started: %v", time.Since(start).Round(time.Millisecond)) }()
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "msg.eml")
	injectMust(t, os.WriteFile(tmpl, []byte("From: Shop <shop@shop.test>\nTo: {{.name}} <{{.email}}>\nSubject: Hi {{.name}}\n\nYour code is {{.code}}.\n"), 0o600), "template")
	var csv strings.Builder
	csv.WriteString("email,name,code\n")
	line := 1
	badLines := map[int]string{}
	for i := range 100 {
		csv.WriteString(fmt.Sprintf("c%03d@inj.test,Name %d,K%03d\n", i, i, i))
		line++
		switch i {
		case 9:
			csv.WriteString("not-an-address,Bad,X\n")
			line++
			badLines[line] = "invalid address"
		case 49:
			csv.WriteString("short@inj.test,Only a name\n")
			line++
			badLines[line] = "2 fields"
		}
	}
	list := filepath.Join(dir, "list.csv")
	injectMust(t, os.WriteFile(list, []byte(csv.String()), 0o600), "csv")
	cp := filepath.Join(dir, "list.checkpoint")
	args := []string{"--server", d.Addr(), "--template", tmpl, "--recipients", list, "--job", "cli-job",
		"--sessions", "4", "--checkpoint", cp}

	out, code := runInjectCLI(t, append(args, "--limit", "40")...)
	if code != 0 || !strings.Contains(out, "accepted 40,") {
		t.Fatalf("first run: exit %d\n%s", code, out)
	}
	d.sink.WaitCount(t, 40, 30*time.Second)
	out, code = runInjectCLI(t, args...)
	if code != 0 || !strings.Contains(out, "accepted 60,") || !strings.Contains(out, "already accepted earlier 40") {
		t.Fatalf("resumed run: exit %d\n%s", code, out)
	}
	for l, why := range badLines {
		if !strings.Contains(out, fmt.Sprintf("list.csv:%d", l)) || !strings.Contains(out, why) {
			t.Errorf("bad line %d (%s) not reported:\n%s", l, why, out)
		}
	}
	d.sink.WaitCount(t, 100, 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	got := map[string]int{}
	for _, m := range d.sink.Messages() {
		got[m.Rcpts[0]]++
		var i int
		fmt.Sscanf(m.Rcpts[0], "c%03d@inj.test", &i)
		msg, parts := textParts(t, m.Data)
		if msg.Header.Get("Subject") != fmt.Sprintf("Hi Name %d", i) || parts["text/plain"] != fmt.Sprintf("Your code is K%03d.\r\n", i) {
			t.Errorf("%s: subject %q body %q", m.Rcpts[0], msg.Header.Get("Subject"), parts["text/plain"])
		}
	}
	for i := range 100 {
		if r := fmt.Sprintf("c%03d@inj.test", i); got[r] != 1 {
			t.Errorf("%s arrived %d times", r, got[r])
		}
	}
	if recs := d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.FieldIs("jobId", "cli-job")), 100, 10*time.Second); len(recs) != 100 {
		t.Errorf("%d d rows for cli-job, want 100", len(recs))
	}

	// Over HTTP, server and token from the config.
	var h strings.Builder
	h.WriteString("name,email,code\n")
	for i := range 20 {
		h.WriteString(fmt.Sprintf("H %d,h%02d@inj.test,HK%d\n", i, i, i))
	}
	hl := filepath.Join(dir, "http.csv")
	injectMust(t, os.WriteFile(hl, []byte(h.String()), 0o600), "csv")
	out, code = runInjectCLI(t, "--config", d.ConfigPath, "--via", "http", "--batch", "7", "--template", tmpl,
		"--recipients", hl, "--job", "cli-http", "--rate", "1000/s")
	if code != 0 || !strings.Contains(out, "accepted 20,") {
		t.Fatalf("http run: exit %d\n%s", code, out)
	}
	d.sink.WaitCount(t, 120, 30*time.Second)

	// Nothing reachable: exit 1.
	out, code = runInjectCLI(t, "--server", testenv.FreeAddr(t, "127.20.91.250"), "--template", tmpl, "--recipients", hl, "--job", "x")
	if code != 1 || !strings.Contains(out, "unreachable") {
		t.Errorf("unreachable server: exit %d\n%s", code, out)
	}
}

func injectMust(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestInjectCLIInterrupted stops a paced `sluice inject` with SIGINT, as an
// operator's Ctrl-C would, then runs it again with the same checkpoint:
// the second run sends only the rows the first did not get accepted, and
// every row arrives exactly once.
func TestInjectCLIInterrupted(t *testing.T) {
	d := startInjectDaemon(t, 92)
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "msg.eml")
	injectMust(t, os.WriteFile(tmpl, []byte("From: Shop <shop@shop.test>\nTo: <{{.email}}>\nSubject: Row {{.n}}\n\nHello.\n"), 0o600), "template")
	var csv strings.Builder
	csv.WriteString("email,n\n")
	const rows = 60
	for i := range rows {
		csv.WriteString(fmt.Sprintf("r%02d@inj.test,%d\n", i, i))
	}
	list := filepath.Join(dir, "list.csv")
	injectMust(t, os.WriteFile(list, []byte(csv.String()), 0o600), "csv")
	args := []string{"inject", "--server", d.Addr(), "--template", tmpl, "--recipients", list, "--job", "int-job",
		"--sessions", "2", "--checkpoint", filepath.Join(dir, "list.checkpoint")}

	// 20 rows a second: the interrupt lands in the middle of the list.
	cmd := exec.Command(testenv.BuildSluice(t), append(args, "--rate", "20/s")...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	injectMust(t, cmd.Start(), "start")
	d.sink.WaitCount(t, 10, 30*time.Second)
	injectMust(t, cmd.Process.Signal(os.Interrupt), "SIGINT")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("interrupted run: %v\n%s", err, out.String())
	}
	var first int
	if _, err := fmt.Sscanf(out.String()[strings.Index(out.String(), "accepted "):], "accepted %d,", &first); err != nil ||
		first <= 0 || first >= rows || !strings.Contains(out.String(), "interrupted") {
		t.Fatalf("interrupted run did not stop part way (%v):\n%s", err, out.String())
	}

	t.Logf("interrupted after %d of %d rows", first, rows)
	second, code := runInjectCLI(t, args[1:]...)
	if code != 0 || !strings.Contains(second, fmt.Sprintf("accepted %d,", rows-first)) ||
		!strings.Contains(second, fmt.Sprintf("already accepted earlier %d", first)) {
		t.Fatalf("resumed run after %d rows: exit %d\n%s", first, code, second)
	}
	d.sink.WaitCount(t, rows, 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	got := map[string]int{}
	for _, m := range d.sink.Messages() {
		got[m.Rcpts[0]]++
	}
	for i := range rows {
		if r := fmt.Sprintf("r%02d@inj.test", i); got[r] != 1 {
			t.Errorf("%s arrived %d times", r, got[r])
		}
	}
}
