package dsn

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/fbl/trace"
)

var (
	keys = trace.Keys{Current: []byte("dsn-test-secret-0123456789")}
	ref  = trace.Ref{Rcpt: "john@example.com", JobID: "j1", VMTA: "v1", Source: "192.0.2.10", MsgID: "0mGz1kQx3Ab9ZcY7Lp"}
)

// sent is our message as returned in a bounce; an empty traceValue leaves
// the trace header out.
func sent(traceValue string) string {
	if traceValue != "" {
		traceValue = "X-Sluice-Ref: " + traceValue + "\n"
	}
	return "Received: from mta1.esp.example ([192.0.2.10]) by mx.example.com; Thu, 29 Apr 2026 10:00:00 +0000\n" +
		traceValue + "Message-ID: <0mGz1kQx3Ab9ZcY7Lp@esp.example>\nFrom: news@esp.example\nTo: john@example.com\nSubject: Spring sale\n\nHello\n"
}

func standard(status, action, diag, origType, original string) string {
	return "From: MAILER-DAEMON@mx.esp.example (Mail Delivery System)\nTo: bounces@esp.example\nSubject: Undelivered Mail Returned to Sender\n" +
		"Auto-Submitted: auto-replied\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n" +
		"--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n" +
		"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.esp.example\nArrival-Date: Thu, 29 Apr 2026 10:00:00 +0000\n\n" +
		"Final-Recipient: rfc822; john@example.com\nOriginal-Recipient: rfc822;John@Example.com\nAction: " + action + "\nStatus: " + status + "\n" +
		"Remote-MTA: dns; mx.example.com\nDiagnostic-Code: smtp; " + diag + "\n\n" +
		"--B\nContent-Type: " + origType + "\n\n" + original + "\n--B--\n"
}

func parse(t *testing.T, s string, o Options) *Report {
	t.Helper()
	rep, err := ParseWith(strings.NewReader(s), o)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return rep
}

func TestStandard(t *testing.T) {
	rep := parse(t, standard("5.1.1", "failed", "550 5.1.1 <john@example.com>: user unknown", "message/rfc822", sent(trace.Encode(ref, keys))), Options{Keys: keys})
	want := Recipient{Final: "john@example.com", Original: "John@Example.com", Action: "failed", Status: "5.1.1", Code: 550,
		Diagnostic: "smtp; 550 5.1.1 <john@example.com>: user unknown", RemoteMTA: "mx.example.com", Category: bounce.BadMailbox}
	if len(rep.Recipients) != 1 || rep.Recipients[0] != want {
		t.Fatalf("Recipients = %+v, want %+v", rep.Recipients, want)
	}
	if rep.Format != FormatDSN || rep.AutoReply || rep.ReportingMTA != "mx.esp.example" || rep.OriginalMessageID != "0mGz1kQx3Ab9ZcY7Lp@esp.example" {
		t.Errorf("report = %+v", rep)
	}
	if rep.Trace == nil || *rep.Trace != ref || rep.TraceForged {
		t.Errorf("Trace = %+v, forged %v", rep.Trace, rep.TraceForged)
	}
	if rep.From != "MAILER-DAEMON@mx.esp.example" || rep.Subject != "Undelivered Mail Returned to Sender" {
		t.Errorf("From = %q, Subject = %q", rep.From, rep.Subject)
	}
}

func TestTraceVariants(t *testing.T) {
	good := trace.Encode(ref, keys)
	headers := strings.SplitN(sent(good), "\n\n", 2)[0] + "\n"
	qmail := "From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n\nHi. This is the qmail-send program at mx.example.net.\n" +
		"I'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n" +
		"<john@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n--- Below this line is a copy of the message.\n\n" + sent(good)
	cases := map[string]string{
		"text/rfc822-headers":   standard("5.1.1", "failed", "550 5.1.1 unknown", "text/rfc822-headers", headers),
		"returned copy in text": qmail,
	}
	for name, msg := range cases {
		rep := parse(t, msg, Options{Keys: keys})
		if rep.Trace == nil || *rep.Trace != ref {
			t.Errorf("%s: Trace = %+v, forged %v", name, rep.Trace, rep.TraceForged)
		}
		if rep.OriginalMessageID != "0mGz1kQx3Ab9ZcY7Lp@esp.example" {
			t.Errorf("%s: OriginalMessageID = %q", name, rep.OriginalMessageID)
		}
	}
	bad := good[:len(good)-3] + "AAA"
	if bad == good {
		bad = good[:len(good)-3] + "BBB"
	}
	rep := parse(t, standard("5.1.1", "failed", "550 5.1.1 unknown", "message/rfc822", sent(bad)), Options{Keys: keys})
	if rep.Trace != nil || !rep.TraceForged {
		t.Errorf("tampered: Trace = %+v, forged %v", rep.Trace, rep.TraceForged)
	}
}

// TestOtherFormats covers bounce formats that are not in the corpus,
// written from the formats' documentation and common samples.
func TestOtherFormats(t *testing.T) {
	cases := []struct {
		name, msg, rcpts, statuses, action string
	}{
		{"lotus domino", "From: Postmaster@example.com\nSubject: DELIVERY FAILURE: User john (john@example.com) not listed in Domino Directory\n\n" +
			"Your message\n\n  Subject: Spring sale\n\nwas not delivered to:\n\n  john@example.com\n\nbecause:\n\n  User john (john@example.com) not listed in Domino Directory\n",
			"john@example.com", "", "failed"},
		{"groupwise", "From: postmaster@example.org\nSubject: Undeliverable mail\n\nThe message that you sent was undeliverable to the following:\n\tjane@example.org (user not found)\n\nPossible causes: ...\n",
			"jane@example.org", "", "failed"},
		{"exchange 2003 cannot be reached", "From: System Administrator <postmaster@example.com>\nSubject: Undeliverable: Spring sale\n\n" +
			"Your message did not reach some or all of the intended recipients.\n\n      Subject:\tSpring sale\n      Sent:\t4/29/2026 10:00 AM\n\n" +
			"The following recipient(s) cannot be reached:\n\n      john@example.com on 4/29/2026 10:00 AM\n" +
			"            The e-mail account does not exist at the organization this message was sent to.\n            <mx.example.com #5.1.1>\n",
			"john@example.com", "5.1.1", "failed"},
		{"postfix without mime, two recipients", "From: MAILER-DAEMON@mx.esp.example (Mail Delivery System)\nSubject: Undelivered Mail Returned to Sender\n\n" +
			"This is the mail system at host mx.esp.example.\n\nI'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n" +
			"<john@example.com>: host mx.example.com[192.0.2.5] said: 550 5.1.1\n    <john@example.com>: Recipient address rejected: User unknown in local\n    recipient table (in reply to RCPT TO command)\n" +
			"<jane@example.org>: host mx.example.org[192.0.2.6] said: 452 4.2.2 Mailbox full (in\n    reply to RCPT TO command)\n",
			"john@example.com,jane@example.org", "5.1.1,4.2.2", "failed"},
		{"exim, two recipients", "From: Mail Delivery System <Mailer-Daemon@mx.esp.example>\nSubject: Mail delivery failed: returning message to sender\n" +
			"X-Failed-Recipients: john@example.com, jane@example.org\n\nThis message was created automatically by mail delivery software.\n\n" +
			"A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n" +
			"  john@example.com\n    host mx.example.com [192.0.2.5]\n    SMTP error from remote mail server after RCPT TO:<john@example.com>:\n    550 5.1.1 <john@example.com>: Recipient address rejected: User unknown\n" +
			"  jane@example.org\n    host mx.example.org [192.0.2.6]\n    SMTP error from remote mail server after RCPT TO:<jane@example.org>:\n    552 5.2.2 Mailbox full\n\n" +
			"------ This is a copy of the message, including all the headers. ------\n\n" + sent(""),
			"john@example.com,jane@example.org", "5.1.1,5.2.2", "failed"},
		{"qmail, two recipients", "From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n\nHi. This is the qmail-send program at mx.example.net.\n" +
			"I'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n" +
			"<john@example.com>:\n192.0.2.5 does not like recipient.\nRemote host said: 550 5.1.1 User unknown\nGiving up on 192.0.2.5.\n\n" +
			"<jane@example.org>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n--- Below this line is a copy of the message.\n\n" + sent(""),
			"john@example.com,jane@example.org", "5.1.1,5.1.1", "failed"},
		{"sendmail text", "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.esp.example>\nSubject: Returned mail: see transcript for details\n\n" +
			"   ----- The following addresses had permanent fatal errors -----\n<john@example.com>\n    (reason: 550 5.1.1 <john@example.com>... User unknown)\n\n" +
			"   ----- Transcript of session follows -----\n... while talking to mx.example.com.:\n>>> RCPT To:<john@example.com>\n<<< 550 5.1.1 <john@example.com>... User unknown\n",
			"john@example.com", "5.1.1", "failed"},
		{"delay warning", "From: MAILER-DAEMON@mx.esp.example\nSubject: Delayed Mail (still being retried)\n\n" +
			"This is the mail system at host mx.esp.example.\n\n# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n\n" +
			"<john@example.com>: connect to mx.example.com[192.0.2.5]:25: Connection timed out\n",
			"john@example.com", "", "delayed"},
		{"amazon ses transient", "From: no-reply@sns.amazonaws.com\nSubject: AWS Notification Message\n\n" +
			`{"notificationType":"Bounce","bounce":{"bounceType":"Transient","bouncedRecipients":[{"emailAddress":"john@example.com","status":"4.2.2","diagnosticCode":"smtp; 452 4.2.2 Mailbox full \"x\""}]}}`,
			"john@example.com", "4.2.2", "delayed"},
		{"dsn fields in text", "From: MAILER-DAEMON@mx.esp.example\nSubject: Returned mail\nContent-Type: multipart/report; boundary=lost\n\nsome prose\n\n" +
			"Reporting-MTA: dns; mx.esp.example\n\nFinal-Recipient: rfc822; <john@example.com>\nAction: failed\nStatus: 5.2.1 (disabled)\n",
			"john@example.com", "5.2.1", "failed"},
		{"no status, code only", standard("", "", "550 no such user here", "text/plain", "x"), "john@example.com", "", "failed"},
		{"status from the diagnostic", standard("bogus", "failed", "550 5.1.2 bad destination", "text/plain", "x"), "john@example.com", "5.1.2", "failed"},
		{"delayed from the status class", standard("4.4.1", "", "451 4.4.1 no answer", "text/plain", "x"), "john@example.com", "4.4.1", "delayed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := parse(t, c.msg, Options{Keys: keys})
			var rcpts, statuses []string
			for _, r := range rep.Recipients {
				rcpts = append(rcpts, r.Final)
				statuses = append(statuses, r.Status)
				if r.Action != c.action {
					t.Errorf("%s: Action = %q, want %q", r.Final, r.Action, c.action)
				}
				if r.Category == "" {
					t.Errorf("%s: no category", r.Final)
				}
			}
			if got := strings.Join(rcpts, ","); got != c.rcpts {
				t.Errorf("recipients = %q, want %q", got, c.rcpts)
			}
			if got := strings.Join(statuses, ","); got != c.statuses {
				t.Errorf("statuses = %q, want %q", got, c.statuses)
			}
			if rep.AutoReply {
				t.Error("taken as an auto-reply")
			}
		})
	}
}

func TestAutoReplies(t *testing.T) {
	cases := map[string]string{
		"out of office subject": "From: a@example.com\nSubject: Out of Office: Spring sale\n\nI am away.\n",
		"german":                "From: a@example.com\nSubject: Automatische Antwort: Spring sale\n\nIch bin nicht da.\n",
		"french":                "From: a@example.com\nSubject: Réponse automatique : Spring sale\n\nAbsent.\n",
		"encoded subject":       "From: a@example.com\nSubject: =?UTF-8?Q?Automatic_reply=3A_Spring?=\n\nAway.\n",
		"x-autoreply":           "From: a@example.com\nX-Autoreply: yes\nSubject: Re: Spring sale\n\nThanks for your mail.\n",
		"precedence auto_reply": "From: a@example.com\nPrecedence: auto_reply\nSubject: Re: x\n\nThanks.\n",
		"vacation program":      "From: a@example.com\nX-Mailer: vacation 1.2\nSubject: Re: x\n\nAway.\n",
		"auto-submitted only":   "From: a@example.com\nAuto-Submitted: auto-replied\nSubject: Re: Spring sale\n\nThis inbox is no longer monitored.\n",
		"from postmaster":       "From: postmaster@example.com\nSubject: Automatic reply: Spring sale\n\nThe postmaster is on leave.\n",
		"ticket system": "From: support@example.com\nAuto-Submitted: auto-generated\nSubject: [Ticket #123] received\n\n" +
			"We received your mail about <john@example.com>: we will answer soon.\n",
	}
	for name, msg := range cases {
		rep, err := Parse(strings.NewReader(msg), keys, nil)
		if err != nil || !rep.AutoReply || len(rep.Recipients) != 0 {
			t.Errorf("%s: err %v, report %+v; want an auto-reply with no recipients", name, err, rep)
		}
	}
	// A bounce whose subject quotes ours stays a bounce.
	msg := "From: MAILER-DAEMON@mx.esp.example\nSubject: Undeliverable: Out of office sale\nAuto-Submitted: auto-replied\n\n" +
		"<john@example.com>: host mx.example.com said: 550 5.1.1 user unknown\n"
	if rep := parse(t, msg, Options{}); rep.AutoReply || len(rep.Recipients) != 1 {
		t.Errorf("bounce quoting an out-of-office subject: %+v", rep)
	}
}

func TestNotBounce(t *testing.T) {
	cases := map[string]string{
		"ordinary mail":     "From: a@example.com\nTo: b@example.org\nSubject: Lunch?\n\n<c@example.net>: what do you think?\n",
		"empty":             "",
		"bounce, no rcpt":   "From: MAILER-DAEMON@mx.example.com\nSubject: Undelivered Mail\n\nSomething went wrong.\n",
		"malformed mime":    "Content-Type: multipart/report; boundary=\"\n\n--\n--\n\x00\xff",
		"dsn without rcpts": standard("5.1.1", "failed", "x", "text/plain", "x")[:200],
		"complaint report": "From: MAILER-DAEMON@isp.example\nSubject: Undelivered\nContent-Type: multipart/report; report-type=feedback-report; boundary=b\n\n" +
			"--b\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n--b\nContent-Type: text/plain\n\n<john@example.com>: 550 5.1.1 x\n--b--\n",
	}
	for name, msg := range cases {
		if rep, err := Parse(strings.NewReader(msg), keys, nil); !errors.Is(err, ErrNotBounce) {
			t.Errorf("%s: err = %v (%+v), want ErrNotBounce", name, err, rep)
		}
	}
}

func TestPermanent(t *testing.T) {
	cases := []struct {
		r    Recipient
		want bool
	}{
		{Recipient{Action: "failed", Status: "5.1.1"}, true},
		{Recipient{Action: "failed", Status: "4.4.1"}, false},
		{Recipient{Action: "delayed", Status: "4.2.2"}, false},
		{Recipient{Action: "failed", Code: 550}, true},
		{Recipient{Action: "failed", Code: 450}, false},
		{Recipient{Action: "failed"}, true},
		{Recipient{Action: "delayed"}, false},
		{Recipient{Action: "delivered", Status: "2.0.0"}, false},
	}
	for _, c := range cases {
		if got := c.r.Permanent(); got != c.want {
			t.Errorf("%+v.Permanent() = %v, want %v", c.r, got, c.want)
		}
	}
}

func TestClassifier(t *testing.T) {
	msg := standard("5.7.1", "failed", "550 5.7.1 blocked by ACME-42", "text/plain", "x")
	if rep := parse(t, msg, Options{}); rep.Recipients[0].Category != bounce.PolicyRelated {
		t.Errorf("built-in category = %q", rep.Recipients[0].Category)
	}
	c := bounce.NewClassifier([]bounce.Rule{{Pattern: regexp.MustCompile(`ACME-42`), Category: bounce.SpamRelated}})
	if rep := parse(t, msg, Options{Classifier: c}); rep.Recipients[0].Category != bounce.SpamRelated {
		t.Errorf("operator category = %q", rep.Recipients[0].Category)
	}
	msg = strings.Replace(msg, "Action: failed", "Action: delivered", 1)
	if rep := parse(t, msg, Options{}); rep.Recipients[0].Category != "" {
		t.Errorf("delivered recipient got category %q", rep.Recipients[0].Category)
	}
}

func TestSizeLimit(t *testing.T) {
	base := standard("5.1.1", "failed", "550 5.1.1 unknown", "message/rfc822", sent(""))
	pad := strings.Repeat("<x@example.com>: padding in the returned message\n", (MaxSize-len(base))/50)
	fits := strings.Replace(base, "Hello\n", "Hello\n"+pad, 1)
	start := time.Now()
	rep, err := Parse(strings.NewReader(fits), keys, nil)
	if err != nil || len(rep.Recipients) != 1 {
		t.Fatalf("%d bytes: %v, %+v", len(fits), err, rep)
	}
	t.Logf("parsed a %d-byte bounce in %v", len(fits), time.Since(start))
	// Text bounces are read by heuristics: a huge one stays bounded too.
	text := "From: MAILER-DAEMON@mx.example.com\nSubject: failure notice\n\nThe following addresses failed:\n\n" +
		strings.Repeat("<x@example.com>: 550 5.1.1 user unknown\nrecipient address: y@example.com\n", MaxSize/90)
	start = time.Now()
	if rep, err := Parse(strings.NewReader(text), keys, nil); err != nil || len(rep.Recipients) == 0 {
		t.Fatalf("big text bounce: %v", err)
	}
	t.Logf("parsed a %d-byte text bounce in %v", len(text), time.Since(start))
	over := fits + strings.Repeat("x", MaxSize+1-len(fits))
	if _, err := Parse(strings.NewReader(over), keys, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d bytes: err = %v, want ErrTooLarge", len(over), err)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "dsn", "*.eml"))
	if len(files) == 0 {
		f.Fatal("no corpus files")
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	c := bounce.NewClassifier(nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Parse(bytes.NewReader(b), keys, c)
		if err != nil {
			return
		}
		if rep.AutoReply && len(rep.Recipients) > 0 {
			t.Fatalf("auto-reply with recipients %+v", rep.Recipients)
		}
		if !rep.AutoReply && len(rep.Recipients) == 0 {
			t.Fatal("bounce without recipients")
		}
		for _, r := range rep.Recipients {
			if r.Final == "" || r.Action == "" {
				t.Fatalf("incomplete recipient %+v", r)
			}
		}
	})
}
