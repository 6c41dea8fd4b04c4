package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestFBLHardBounceDSN: an asynchronous RFC 3464 bounce for a hard failure,
// sent to a VERP return-path address, suppresses the address and writes an
// rb record; an auto-reply to the bounce address changes nothing (issue 6,
// acceptance 5).
func TestFBLHardBounceDSN(t *testing.T) {
	t.Parallel()
	env := newFBLEnv(t, "127.20.63", 10)
	n := env.start(t, 101, "", "")
	const rcpt = "ivan.gone@rcpt.test"
	if err := n.inject(t, rcpt, "j5"); err != nil {
		t.Fatal(err)
	}
	orig := env.delivered(t, rcpt).Data
	dsn := dsnReport(rcpt, "5.1.1", "550 5.1.1 <"+rcpt+">: Recipient address rejected: User unknown", orig)
	if rep := n.sendReport(t, "", "bounces+j5.0001@bounce.test", dsn); rep.Code != 250 {
		t.Fatalf("DSN: %s", rep)
	}
	n.waitSuppressed(t, rcpt, time.Second)
	rb := acctOf(t, n, "rb", rcpt, 1)[0]
	if rb["bounceCat"] != "bad-mailbox" || !strings.HasPrefix(rb["dsnStatus"], "5.1.1") || rb["jobId"] != "j5" {
		t.Errorf("rb record: %s", rb)
	}

	// A vacation reply is no bounce.
	const other = "judy.away@rcpt.test"
	vacation := "From: " + other + "\r\nTo: " + bounceAddr + "\r\nSubject: Out of office: test message\r\n" +
		"Auto-Submitted: auto-replied\r\nMessage-ID: <vac.1@rcpt.test>\r\n\r\nI am away until Monday.\r\n"
	if rep := n.sendReport(t, "", bounceAddr, []byte(vacation)); rep.Code != 250 {
		t.Fatalf("auto-reply: %s", rep)
	}
	time.Sleep(300 * time.Millisecond)
	if rep := n.rcptCode(t, other); rep.Code != 250 {
		t.Errorf("an auto-reply suppressed %s: %s", other, rep)
	}
}

// TestFBLComplaintGuard: a job whose complaint rate crosses
// max-complaint-rate once it has min-volume deliveries is held: new mail of
// the job waits while other jobs flow; resuming it through the admin API
// releases the held mail (issue 6, acceptance 6).
func TestFBLComplaintGuard(t *testing.T) {
	t.Parallel()
	env := newFBLEnv(t, "127.20.64", 10)
	n := env.start(t, 101, fblTOML("max-complaint-rate = 0.1\nmin-volume = 5\nwindow = \"1h\""), "")
	for i := range 5 {
		if err := n.inject(t, fmt.Sprintf("k%d.guard@rcpt.test", i), "noisy"); err != nil {
			t.Fatal(err)
		}
	}
	n.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.FieldIs("jobId", "noisy")), 5, 10*time.Second)
	orig := redact(env.delivered(t, "k0.guard@rcpt.test").Data, "k0.guard@rcpt.test")
	if rep := n.sendReport(t, "", fblAddr, arfReport("abuse", orig, false, "")); rep.Code != 250 {
		t.Fatalf("report: %s", rep)
	}
	n.waitSuppressed(t, "k0.guard@rcpt.test", time.Second)

	// 1 complaint in 5 deliveries = 0.2 > 0.1: the job is held.
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(n.LogTail(400), "job paused by complaint guard") {
		if time.Now().After(deadline) {
			t.Fatalf("no guard event in the log")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := n.inject(t, "late.guard@rcpt.test", "noisy"); err != nil {
		t.Fatal(err)
	}
	if err := n.inject(t, "calm.guard@rcpt.test", "calm"); err != nil {
		t.Fatal(err)
	}
	env.delivered(t, "calm.guard@rcpt.test") // other jobs flow
	time.Sleep(1500 * time.Millisecond)
	if recs := testenv.Filter(n.Acct(), testenv.OfType("d"), testenv.ForRcpt("late.guard@rcpt.test")); len(recs) != 0 {
		t.Fatalf("held job delivered:\n%s", dump(recs))
	}

	if out, err := n.sluiceCLI(t, nil, "resume", "job", "noisy"); err != nil {
		t.Fatalf("sluice resume job noisy: %v\n%s", err, out)
	}
	n.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt("late.guard@rcpt.test")), 1, 10*time.Second)
}

var listUnsubURL = regexp.MustCompile(`<(http://[^>]+/u/[A-Za-z0-9_-]+)>`)
var listUnsubMailto = regexp.MustCompile(`<mailto:([^>]+)>`)

// TestFBLUnsubscribe: delivered mail carries List-Unsubscribe (with the
// URL and the mailto form) and List-Unsubscribe-Post; a One-Click POST to
// the URL answers 2xx and suppresses the recipient, and so does mail to
// the mailto address; each writes an opt-out record (issue 6, acceptance
// 7).
func TestFBLUnsubscribe(t *testing.T) {
	t.Parallel()
	env := newFBLEnv(t, "127.20.60", 11) // shares the /24 with the report test, on other hosts
	n := env.start(t, 111, "", "")
	rcpts := []string{"kate.click@rcpt.test", "liam.mailto@rcpt.test"}
	for _, r := range rcpts {
		if err := n.inject(t, r, "news"); err != nil {
			t.Fatal(err)
		}
	}
	var urls, mailtos []string
	for _, r := range rcpts {
		m := env.delivered(t, r)
		lu, lup := header(m.Data, "List-Unsubscribe"), header(m.Data, "List-Unsubscribe-Post")
		u, mt := listUnsubURL.FindStringSubmatch(lu), listUnsubMailto.FindStringSubmatch(lu)
		if u == nil || mt == nil || lup != "List-Unsubscribe=One-Click" {
			t.Fatalf("delivered to %s: List-Unsubscribe %q, List-Unsubscribe-Post %q", r, lu, lup)
		}
		urls, mailtos = append(urls, u[1]), append(mailtos, mt[1])
	}

	// RFC 8058 §3.2: a GET changes nothing.
	resp, err := http.Get(urls[0])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if rep := n.rcptCode(t, rcpts[0]); rep.Code != 250 {
		t.Fatalf("a GET unsubscribed: %s", rep)
	}
	resp, err = http.PostForm(urls[0], url.Values{"List-Unsubscribe": {"One-Click"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("one-click POST: %s", resp.Status)
	}
	n.waitSuppressed(t, rcpts[0], time.Second)

	// The mailto form, from anyone.
	msg := "From: " + rcpts[1] + "\r\nTo: " + mailtos[1] + "\r\nSubject: unsubscribe\r\n\r\nplease\r\n"
	if rep := n.sendReport(t, rcpts[1], mailtos[1], []byte(msg)); rep.Code != 250 {
		t.Fatalf("mailto unsubscribe: %s", rep)
	}
	n.waitSuppressed(t, rcpts[1], time.Second)
	for i, r := range rcpts {
		f := acctOf(t, n, "f", r, 1)[0]
		via := []string{"one-click", "mailto"}[i]
		if f["feedbackType"] != "opt-out" || f["userAgent"] != via || f["jobId"] != "news" {
			t.Errorf("opt-out record for %s: %s", r, f)
		}
	}
	// A forged token is refused and changes nothing.
	bad := urls[0][:len(urls[0])-3] + "AAA"
	resp, err = http.PostForm(strings.Replace(bad, "kate", "mona", 1), url.Values{"List-Unsubscribe": {"One-Click"}})
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			t.Errorf("a forged token got %s", resp.Status)
		}
	}
}

// TestFBLBadInput: malformed MIME, a 10 MB report and a report that names
// no recipient are refused or ignored with a log line, and the daemon goes
// on delivering (issue 6, acceptance 8).
func TestFBLBadInput(t *testing.T) {
	t.Parallel()
	env := newFBLEnv(t, "127.20.61", 11) // other hosts of the report-forms test's /24
	n := env.start(t, 111, "", "")

	malformed := []byte("From: x@isp.test\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"B\r\n\r\n" +
		"--B\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type abuse\r\n--B--\r\n--C\r\n\x01\x02garbage\r\n")
	rep := n.sendReport(t, "", fblAddr, malformed)
	t.Logf("malformed MIME: %s", rep)
	if rep.Code == 250 && len(testenv.Filter(n.Acct(), testenv.OfType("f"))) > 0 {
		t.Errorf("malformed MIME was acted on")
	}

	big := bytes.Repeat([]byte("0123456789012345678901234567890123456789012345678901234567890123456789\r\n"), (10<<20)/72+10)
	huge := arfReport("abuse", append(headersOf(testenv.GenMessage(0, 100, "x@rcpt.test")), big...), false, "")
	rep = n.sendReport(t, "", fblAddr, huge)
	if rep.Code != 552 {
		t.Errorf("10 MB report: %s, want 552", rep)
	}

	noRcpt := arfReport("abuse", testenv.GenMessage(0, 100, "xxxxxxxx@rcpt.test"), false, "")
	noRcpt = bytes.Replace(noRcpt, []byte("To: <xxxxxxxx@rcpt.test>\r\n"), nil, 1)
	if rep := n.sendReport(t, "", fblAddr, noRcpt); rep.Code != 250 {
		t.Errorf("report without recipient: %s (want accepted and ignored)", rep)
	}
	if rep := n.sendReport(t, "", bounceAddr, []byte("Subject: hello\r\n\r\nnot a bounce\r\n")); rep.Code/100 == 4 {
		t.Errorf("junk to the bounce address: %s", rep)
	}

	log := n.LogTail(400)
	for _, want := range []string{"report refused", "report not attributed"} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q log line", want)
		}
	}
	if recs := testenv.Filter(n.Acct(), testenv.OfType("f", "rb")); len(recs) != 0 {
		t.Errorf("bad input was accounted as reports:\n%s", dump(recs))
	}
	if err := n.inject(t, "still.working@rcpt.test", ""); err != nil {
		t.Fatalf("daemon after bad input: %v", err)
	}
	env.delivered(t, "still.working@rcpt.test")
	if !n.Running() {
		t.Fatal("daemon exited")
	}
}

// TestFBLSuppressCancelsQueued: mail already queued for an address that
// becomes suppressed is cancelled with a b record (policy-related,
// "suppressed: ..."), and a source with on-suppressed = "accept-and-drop"
// gets 250 for a suppressed recipient, which is dropped with a b record.
func TestFBLSuppressCancelsQueued(t *testing.T) {
	t.Parallel()
	env := newFBLEnv(t, "127.20.63", 11, testenv.SinkOptions{
		RcptReply: func(rcpt string, _ int) (int, string, string) {
			if strings.HasPrefix(rcpt, "queued.") {
				return 451, "4.2.0", "try later"
			}
			return 0, "", ""
		},
	})
	n := env.start(t, 111, "", "\n[[source]]\ncidr = \"127.20.63.2/32\"\nalways-allow-relaying = true\non-suppressed = \"accept-and-drop\"\n")
	const rcpt = "queued.cancel@rcpt.test"
	if err := n.inject(t, rcpt, "j9"); err != nil {
		t.Fatal(err)
	}
	n.WaitAcct(t, testenv.All(testenv.OfType("t"), testenv.ForRcpt(rcpt)), 1, 10*time.Second)
	if out, err := n.sluiceCLI(t, nil, "suppress", "add", "--reason", "manual", rcpt); err != nil {
		t.Fatalf("sluice suppress add: %v\n%s", err, out)
	}
	b := n.WaitAcct(t, testenv.All(testenv.OfType("b"), testenv.ForRcpt(rcpt)), 1, 5*time.Second)[0]
	if b["bounceCat"] != "policy-related" || !strings.Contains(b["dsnDiag"], "suppressed") {
		t.Errorf("cancel record: %s", b)
	}

	// accept-and-drop: 250, nothing delivered, a b record.
	if err := n.injectFrom(t, "127.20.63.2", rcpt, "j9"); err != nil {
		t.Fatalf("accept-and-drop source got %v, want 250", err)
	}
	n.WaitAcct(t, testenv.All(testenv.OfType("b"), testenv.ForRcpt(rcpt), testenv.FieldIs("srcType", "suppressed")), 1, 5*time.Second)
	if code, _ := testenv.ReplyCode(n.inject(t, rcpt, "j9")); code != 550 {
		t.Errorf("rejecting source got %d, want 550", code)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
