package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestFBLReportFromDeliveredMail: a message delivered through node A comes
// back from the ISP as an ARF report built from what the sink received,
// with the recipient redacted everywhere but our trace header. Sent over
// SMTP to the FBL address from a client with no relay rights, it
// suppresses the recipient on both nodes (sharing Redis) within 1 s;
// injecting to it again gets 550 5.7.1 (issue 6, acceptance 2).
func TestFBLReportFromDeliveredMail(t *testing.T) {
	t.Parallel()
	env := newFBLEnv(t, "127.20.60", 10)
	redisTable := "\n[redis]\nurl = \"redis://" + testenv.StartRedis(t) + "/0\"\n"
	a := env.start(t, 101, "", redisTable)
	b := env.start(t, 102, "", redisTable)

	const rcpt = "alice.report@rcpt.test"
	if err := a.inject(t, rcpt, "spring-sale"); err != nil {
		t.Fatalf("inject: %v", err)
	}
	m := env.delivered(t, rcpt)
	ref := header(m.Data, "X-Sluice-Ref")
	if ref == "" || len(ref) > 120 {
		t.Fatalf("delivered X-Sluice-Ref = %q (%d characters), want a value of at most 120", ref, len(ref))
	}
	if strings.Contains(ref, "alice") {
		t.Fatalf("trace header shows the recipient in clear: %q", ref)
	}
	if got := header(m.Data, "Feedback-ID"); got != "spring-sale:e2e" {
		t.Errorf("Feedback-ID = %q, want spring-sale:e2e", got)
	}
	if header(m.Data, "X-Job") != "" {
		t.Errorf("X-Job reached the recipient")
	}

	original := redact(m.Data, rcpt)
	if strings.Contains(string(original), "alice.report") {
		t.Fatal("redaction left the recipient in the report")
	}
	report := arfReport("abuse", original, false, "Original-Rcpt-To: xxxxxxxx@rcpt.test\r\nRedacted-Address: localpart\r\n")
	if rep := a.sendReport(t, "fbl-bounces@isp.test", fblAddr, report); rep.Code != 250 {
		t.Fatalf("report over SMTP: %s", rep)
	}
	sent := time.Now()
	tookA := a.waitSuppressed(t, rcpt, time.Second)
	tookB := b.waitSuppressed(t, rcpt, time.Second-time.Since(sent)+tookA)
	t.Logf("suppressed on node A after %v, on node B after %v", tookA.Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
	_ = tookB

	for _, n := range []*fblNode{a, b} {
		code, enh := testenv.ReplyCode(n.inject(t, rcpt, "spring-sale"))
		if code != 550 || enh != "5.7.1" {
			t.Errorf("%s: re-injection to %s got %d %s, want 550 5.7.1", n.Addr(), rcpt, code, enh)
		}
	}
	f := acctOf(t, a, "f", rcpt, 1)[0]
	for k, want := range map[string]string{"feedbackType": "abuse", "format": "arf", "userAgent": "IspFBL/1.0",
		"reportingMta": "mx.isp.test", "reportedDomain": "testenv.sluice", "repSourceIp": "127.0.0.1", "jobId": "spring-sale"} {
		if f[k] != want {
			t.Errorf("f record %s = %q, want %q\n%s", k, f[k], want, f)
		}
	}
	// Another recipient of the same domain is unaffected.
	if rep := b.rcptCode(t, "bob.other@rcpt.test"); rep.Code != 250 {
		t.Errorf("RCPT of an unrelated address: %s", rep)
	}
}

// TestFBLOtherReportForms: a headers-only ARF, a JMRP report (both over
// SMTP) and a report fed with `sluice fbl ingest` each suppress their
// recipient, attributed by the trace header alone (issue 6, acceptance 3).
// The suppression CLI works through the admin API.
func TestFBLOtherReportForms(t *testing.T) {
	t.Parallel()
	env := newFBLEnv(t, "127.20.61", 10)
	n := env.start(t, 101, "", "")
	rcpts := []string{"carol.headers@rcpt.test", "dave.jmrp@rcpt.test", "erin.cli@rcpt.test"}
	for _, r := range rcpts {
		if err := n.inject(t, r, "j2"); err != nil {
			t.Fatalf("inject %s: %v", r, err)
		}
	}
	msgs := make([][]byte, len(rcpts))
	for i, r := range rcpts {
		msgs[i] = redact(env.delivered(t, r).Data, r)
	}

	if rep := n.sendReport(t, "", fblAddr, arfReport("abuse", msgs[0], true, "")); rep.Code != 250 {
		t.Fatalf("headers-only ARF: %s", rep)
	}
	n.waitSuppressed(t, rcpts[0], time.Second)

	if rep := n.sendReport(t, "", fblAddr, jmrpReport(msgs[1], "xxxxxxxx@rcpt.test")); rep.Code != 250 {
		t.Fatalf("JMRP: %s", rep)
	}
	n.waitSuppressed(t, rcpts[1], time.Second)
	if f := acctOf(t, n, "f", rcpts[1], 1)[0]; f["format"] != "jmrp" || f["feedbackType"] != "abuse" {
		t.Errorf("JMRP f record: %s", f)
	}

	file := t.TempDir() + "/report.eml"
	writeFile(t, file, arfReport("fraud", msgs[2], false, ""))
	out, err := n.sluiceCLI(t, nil, "fbl", "ingest", file)
	if err != nil || !strings.Contains(out, "suppressed") {
		t.Fatalf("sluice fbl ingest: %v\n%s", err, out)
	}
	n.waitSuppressed(t, rcpts[2], time.Second)

	// The suppression list over the CLI: list, add, export, remove, import.
	out, err = n.sluiceCLI(t, nil, "suppress", "list")
	if err != nil || strings.Count(out, "complaint") != 3 {
		t.Errorf("sluice suppress list: %v\n%s", err, out)
	}
	if out, err = n.sluiceCLI(t, nil, "suppress", "add", "--note", "ticket 7", "frank.manual@rcpt.test", "@blocked.test"); err != nil {
		t.Fatalf("sluice suppress add: %v\n%s", err, out)
	}
	n.waitSuppressed(t, "frank.manual@rcpt.test", time.Second)
	n.waitSuppressed(t, "anyone@blocked.test", time.Second)
	csv, err := n.sluiceCLI(t, nil, "suppress", "export")
	if err != nil || !strings.Contains(csv, "frank.manual@rcpt.test") || !strings.Contains(csv, "@blocked.test") {
		t.Fatalf("sluice suppress export: %v\n%s", err, csv)
	}
	if out, err = n.sluiceCLI(t, nil, "suppress", "remove", "frank.manual@rcpt.test"); err != nil {
		t.Fatalf("sluice suppress remove: %v\n%s", err, out)
	}
	if rep := n.rcptCode(t, "frank.manual@rcpt.test"); rep.Code != 250 {
		t.Errorf("after remove, RCPT got %s", rep)
	}
	if out, err = n.sluiceCLI(t, []byte("addr,scope,reason\ngrace.import@rcpt.test,,hard-bounce\n"), "suppress", "import", "-"); err != nil {
		t.Fatalf("sluice suppress import: %v\n%s", err, out)
	}
	n.waitSuppressed(t, "grace.import@rcpt.test", time.Second)
}

// TestFBLForgedReport: a report whose trace header was tampered with
// changes nothing, even when it names the recipient in Original-Rcpt-To
// (issue 6, acceptance 4).
func TestFBLForgedReport(t *testing.T) {
	t.Parallel()
	env := newFBLEnv(t, "127.20.62", 10)
	n := env.start(t, 101, "", "")
	const rcpt = "henry.forged@rcpt.test"
	if err := n.inject(t, rcpt, "j3"); err != nil {
		t.Fatal(err)
	}
	data := env.delivered(t, rcpt).Data
	ref := header(data, "X-Sluice-Ref")
	// Flip one character in the middle of the value.
	i := len(ref) / 2
	c := byte('A')
	if ref[i] == 'A' {
		c = 'B'
	}
	forged := strings.Replace(string(data), ref, ref[:i]+string(c)+ref[i+1:], 1)
	rep := n.sendReport(t, "", fblAddr, arfReport("abuse", []byte(forged), false, "Original-Rcpt-To: "+rcpt+"\r\n"))
	if rep.Code != 250 {
		t.Fatalf("forged report: %s (want it accepted and ignored)", rep)
	}
	time.Sleep(1500 * time.Millisecond)
	if rep := n.rcptCode(t, rcpt); rep.Code != 250 {
		t.Errorf("after a forged report RCPT %s got %s, want 250", rcpt, rep)
	}
	if recs := testenv.Filter(n.Acct(), testenv.OfType("f")); len(recs) != 0 {
		t.Errorf("a forged report wrote f records:\n%s", dump(recs))
	}
	if !strings.Contains(n.LogTail(200), "forged report ignored") {
		t.Errorf("no log line for the forged report")
	}
}
