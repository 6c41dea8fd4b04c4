package arf

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/fbl/trace"
)

var (
	oldKey = []byte("old-secret-0123456789abcdef")
	newKey = []byte("new-secret-0123456789abcdef")
	keys   = trace.Keys{Current: newKey, Old: [][]byte{oldKey}}
	ref    = trace.Ref{Rcpt: "alice@example.com", JobID: "spring-26", VMTA: "v1", Source: "192.0.2.10", MsgID: "0mGz1kQx3Ab9ZcY7Lp"}
)

// delivered is a message as the recipient's mailbox received it, with the
// recipient redacted everywhere except in the trace header.
// An empty traceValue leaves the header out.
func delivered(traceValue string) string {
	if traceValue != "" {
		traceValue = "X-Sluice-Ref: " + traceValue + "\n"
	}
	return "Return-Path: <bounces@esp.example>\n" +
		"Received: from mta1.esp.example (mta1.esp.example [192.0.2.10])\n\tby mx.isp.example with ESMTP; Thu, 29 Apr 2026 10:00:00 +0000\n" +
		traceValue +
		"X-Job: spring-26\n" +
		"Message-ID: <0mGz1kQx3Ab9ZcY7Lp@esp.example>\n" +
		"From: News <news@esp.example>\n" +
		"To: redacted@isp.example\n" +
		"Subject: Spring sale\n\nHello\n"
}

const feedback = "Feedback-Type: abuse\nUser-Agent: TestFBL/1.0\nVersion: 1\nOriginal-Mail-From: <bounces@esp.example>\n" +
	"Arrival-Date: Thu, 29 Apr 2026 10:00:01 +0000\nReporting-MTA: dns; mx.isp.example\nSource-IP: 192.0.2.10\n" +
	"Reported-Domain: esp.example\nIncidents: 3\nRedacted-Address: redacted@\n"

// report wraps feedback fields and an original into an RFC 6522 report.
func report(fields, origType, origCTE, original string) string {
	if origCTE == "base64" {
		original = base64.StdEncoding.EncodeToString([]byte(original))
	}
	cte := ""
	if origCTE != "" {
		cte = "Content-Transfer-Encoding: " + origCTE + "\n"
	}
	return "From: fbl@isp.example\nTo: fbl@fbl.esp.example\nSubject: complaint\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\n\n" +
		"--b1\nContent-Type: text/plain\n\nA complaint.\n" +
		"--b1\nContent-Type: message/feedback-report\n\n" + fields +
		"\n--b1\nContent-Type: " + origType + "\n" + cte + "\n" + original + "\n--b1--\n"
}

func parse(t *testing.T, s string, o Options) *Report {
	t.Helper()
	rep, err := ParseWith(strings.NewReader(s), o)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return rep
}

func TestTraceAttribution(t *testing.T) {
	good := trace.Encode(ref, keys)
	withOld := trace.Encode(ref, trace.Keys{Current: oldKey})
	jmrp := "From: staff@hotmail.com\nSubject: complaint about message from 192.0.2.10\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"j\"\n\n--j\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n" +
		"X-HmXmrOriginalRecipient: redacted@hotmail.example\n" + delivered(good) + "\n--j--\n"
	headersOnly := strings.SplitN(delivered(good), "\n\n", 2)[0] + "\n"
	cases := []struct{ name, msg, format string }{
		{"message/rfc822", report(feedback, "message/rfc822", "", delivered(good)), FormatARF},
		{"text/rfc822-headers", report(feedback, "text/rfc822-headers", "", headersOnly), FormatARF},
		{"base64 original", report(feedback, "message/rfc822", "base64", delivered(good)), FormatARF},
		{"quoted-printable original", report(feedback, "message/rfc822", "quoted-printable", delivered(good)), FormatARF},
		{"odd casing", strings.NewReplacer("message/feedback-report", "Message/Feedback-Report", "message/rfc822", "MESSAGE/RFC822",
			"Feedback-Type", "feedback-type", "X-Sluice-Ref", "x-sluice-ref").Replace(report(feedback, "message/rfc822", "", delivered(good))), FormatARF},
		{"crlf", strings.ReplaceAll(report(feedback, "message/rfc822", "", delivered(good)), "\n", "\r\n"), FormatARF},
		{"signed with the old key", report(feedback, "message/rfc822", "", delivered(withOld)), FormatARF},
		{"original pasted as text", report(feedback, "text/plain", "", delivered(good)), FormatARF},
		{"jmrp", jmrp, FormatJMRP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := parse(t, c.msg, Options{Keys: keys})
			if rep.Format != c.format {
				t.Errorf("Format = %q, want %q", rep.Format, c.format)
			}
			if rep.Trace == nil || *rep.Trace != ref || rep.TraceForged {
				t.Fatalf("Trace = %+v (forged %v), want %+v", rep.Trace, rep.TraceForged, ref)
			}
			if rep.Recipient != ref.Rcpt || rep.RecipientSource != FromTrace || rep.Redacted {
				t.Errorf("Recipient = %q from %q (redacted %v), want %q from the trace", rep.Recipient, rep.RecipientSource, rep.Redacted, ref.Rcpt)
			}
			if rep.FeedbackType != "abuse" {
				t.Errorf("FeedbackType = %q", rep.FeedbackType)
			}
			if c.name != "original pasted as text" && (rep.XJob != "spring-26" || rep.OriginalMessageID != "0mGz1kQx3Ab9ZcY7Lp@esp.example") {
				t.Errorf("XJob = %q, OriginalMessageID = %q", rep.XJob, rep.OriginalMessageID)
			}
		})
	}
}

func TestFields(t *testing.T) {
	rep := parse(t, report(feedback+"Original-Rcpt-To: <bob@isp.example>\nAuth-Failure: DMARC\n", "message/rfc822", "", delivered("none")), Options{Keys: keys})
	want := Report{
		Format: FormatARF, FeedbackType: "abuse", UserAgent: "TestFBL/1.0", Version: "1",
		OriginalMailFrom: "bounces@esp.example", ReportingMTA: "mx.isp.example", SourceIP: "192.0.2.10",
		Incidents: 3, AuthFailure: "dmarc", OriginalMessageID: "0mGz1kQx3Ab9ZcY7Lp@esp.example", XJob: "spring-26",
	}
	got := *rep
	got.OriginalRcptTo, got.ReportedDomain, got.Recipients, got.Trace = nil, nil, nil, nil
	got.ArrivalDate, got.TraceForged, got.Recipient, got.RecipientSource, got.Redacted = time.Time{}, false, "", "", false
	if got.Format != want.Format || got.FeedbackType != want.FeedbackType || got.UserAgent != want.UserAgent ||
		got.Version != want.Version || got.OriginalMailFrom != want.OriginalMailFrom || got.ReportingMTA != want.ReportingMTA ||
		got.SourceIP != want.SourceIP || got.Incidents != want.Incidents || got.AuthFailure != want.AuthFailure ||
		got.OriginalMessageID != want.OriginalMessageID || got.XJob != want.XJob {
		t.Errorf("report:\n got %+v\nwant %+v", got, want)
	}
	if !rep.ArrivalDate.Equal(time.Date(2026, 4, 29, 10, 0, 1, 0, time.UTC)) {
		t.Errorf("ArrivalDate = %v", rep.ArrivalDate)
	}
	if strings.Join(rep.ReportedDomain, ",") != "esp.example" || strings.Join(rep.OriginalRcptTo, ",") != "bob@isp.example" {
		t.Errorf("ReportedDomain = %q, OriginalRcptTo = %q", rep.ReportedDomain, rep.OriginalRcptTo)
	}
	// "none" is not a valid trace value: the report counts as forged.
	if !rep.TraceForged || rep.Recipient != "" {
		t.Errorf("TraceForged = %v, Recipient = %q", rep.TraceForged, rep.Recipient)
	}
}

func TestForgedTraceIsNotActedOn(t *testing.T) {
	good := trace.Encode(ref, keys)
	c := byte('A')
	if good[10] == 'A' {
		c = 'B'
	}
	tampered := good[:10] + string(c) + good[11:]
	other := trace.Encode(trace.Ref{Rcpt: "victim@example.com"}, trace.Keys{Current: []byte("attacker-key-0123456789")})
	for name, v := range map[string]string{"tampered": tampered, "foreign key": other} {
		msg := report(feedback+"Original-Rcpt-To: victim@example.com\n", "message/rfc822", "", delivered(v))
		rep := parse(t, msg, Options{Keys: keys})
		if rep.Trace != nil || !rep.TraceForged {
			t.Errorf("%s: Trace = %+v, TraceForged = %v", name, rep.Trace, rep.TraceForged)
		}
		if rep.Recipient != "" || len(rep.Recipients) != 0 {
			t.Errorf("%s: a forged report was attributed to %q", name, rep.Recipient)
		}
		if strings.Join(rep.OriginalRcptTo, ",") != "victim@example.com" {
			t.Errorf("%s: OriginalRcptTo = %q, still wanted for the log", name, rep.OriginalRcptTo)
		}
	}
	// Without the keys, an authentic header cannot be told from a forged one.
	rep := parse(t, report(feedback, "message/rfc822", "", delivered(good)), Options{})
	if rep.Trace != nil || !rep.TraceForged {
		t.Errorf("no keys: Trace = %+v, TraceForged = %v", rep.Trace, rep.TraceForged)
	}
}

func TestCustomTraceHeader(t *testing.T) {
	msg := report(feedback, "message/rfc822", "", strings.Replace(delivered(trace.Encode(ref, keys)), "X-Sluice-Ref:", "X-Esp-Ref:", 1))
	if rep := parse(t, msg, Options{Keys: keys}); rep.Trace != nil || rep.TraceForged {
		t.Errorf("default name: Trace = %+v, forged %v; want neither", rep.Trace, rep.TraceForged)
	}
	if rep := parse(t, msg, Options{Keys: keys, TraceHeader: "X-Esp-Ref"}); rep.Trace == nil || rep.Recipient != ref.Rcpt {
		t.Errorf("custom name: Trace = %+v, Recipient = %q", rep.Trace, rep.Recipient)
	}
}

func TestAttributionOrder(t *testing.T) {
	orig := func(extra string) string {
		return extra + "From: news@esp.example\nTo: carol@isp.example\nSubject: x\n\nbody\n"
	}
	cases := []struct {
		name, fields, original, want, source string
		redacted                             bool
	}{
		{"original-rcpt-to first", "Feedback-Type: abuse\nOriginal-Rcpt-To: dave@isp.example\nOriginal-Rcpt-To: erin@isp.example\n", orig(""), "dave@isp.example,erin@isp.example", FromOriginalRcptTo, false},
		{"removal-recipient", "Feedback-Type: opt-out\nRemoval-Recipient: frank@isp.example\n", orig(""), "frank@isp.example", FromRemovalRecipient, false},
		{"x-hmxmr before To", "Feedback-Type: abuse\n", orig("X-HmXmrOriginalRecipient: gina@isp.example\n"), "gina@isp.example", FromHmXmr, false},
		{"single To", "Feedback-Type: abuse\n", orig(""), "carol@isp.example", FromOriginalTo, false},
		{"redacted report", "Feedback-Type: abuse\nRedacted-Address: redacted\n", orig(""), "carol@isp.example", FromOriginalTo, true},
		{"two To addresses", "Feedback-Type: abuse\n", strings.Replace(orig(""), "carol@isp.example", "a@isp.example, b@isp.example", 1), "", "", false},
		{"undisclosed", "Feedback-Type: abuse\n", strings.Replace(orig(""), "carol@isp.example", "undisclosed-recipients:;", 1), "", "", false},
		{"redacted Original-Rcpt-To skipped", "Feedback-Type: abuse\nOriginal-Rcpt-To: redacted@\n", orig(""), "carol@isp.example", FromOriginalTo, false},
	}
	for _, c := range cases {
		rep := parse(t, report(c.fields, "message/rfc822", "", c.original), Options{Keys: keys})
		if got := strings.Join(rep.Recipients, ","); got != c.want || rep.RecipientSource != c.source || rep.Redacted != c.redacted {
			t.Errorf("%s: Recipients = %q from %q (redacted %v), want %q from %q (redacted %v)",
				c.name, got, rep.RecipientSource, rep.Redacted, c.want, c.source, c.redacted)
		}
		if len(rep.Recipients) > 0 && rep.Recipient != rep.Recipients[0] {
			t.Errorf("%s: Recipient %q is not the first of Recipients", c.name, rep.Recipient)
		}
	}
}

func TestTolerance(t *testing.T) {
	cases := []struct{ name, msg, ftype string }{
		{"empty feedback part", report("", "message/rfc822", "", delivered("")), ""},
		{"fields after prose in a text part", "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nHello, a report:\n\nFeedback-Type: Fraud\nUser-Agent: old\nOriginal-Rcpt-To: h@isp.example\n--x--\n", "fraud"},
		{"single part with fields", "Subject: report\n\nFeedback-Type: virus\nOriginal-Rcpt-To: h@isp.example\n", "virus"},
		{"no closing boundary", strings.TrimSuffix(report(feedback, "message/rfc822", "", delivered("")), "--b1--\n"), "abuse"},
		{"boundary mismatch", strings.Replace(report(feedback, "message/rfc822", "", delivered("")), `boundary="b1"`, `boundary="other"`, 1), "abuse"},
	}
	for _, c := range cases {
		rep, err := Parse(strings.NewReader(c.msg), keys)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if rep.FeedbackType != c.ftype {
			t.Errorf("%s: FeedbackType = %q, want %q", c.name, rep.FeedbackType, c.ftype)
		}
	}
}

func TestRejects(t *testing.T) {
	cases := map[string]string{
		"plain mail":   "From: a@b.example\nTo: c@d.example\nSubject: hi\n\nhello\n",
		"a bounce":     "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b.example\n--b--\n",
		"empty":        "",
		"binary noise": "\x00\x01\x02--\r\r\n\xff",
	}
	for name, msg := range cases {
		if _, err := Parse(strings.NewReader(msg), keys); !errors.Is(err, ErrNotReport) {
			t.Errorf("%s: err = %v, want ErrNotReport", name, err)
		}
	}
}

func TestSizeLimit(t *testing.T) {
	big := report(feedback+"Original-Rcpt-To: i@isp.example\n", "message/rfc822", "", delivered(""))
	pad := strings.Repeat("padding line of the original message body\n", (MaxSize-len(big))/43)
	fits := strings.Replace(big, "Hello\n", "Hello\n"+pad, 1)
	if len(fits) > MaxSize {
		t.Fatalf("test message is %d bytes", len(fits))
	}
	start := time.Now()
	rep, err := Parse(strings.NewReader(fits), keys)
	if err != nil || rep.Recipient != "i@isp.example" {
		t.Fatalf("%d-byte report: %v, %+v", len(fits), err, rep)
	}
	t.Logf("parsed a %d-byte report in %v", len(fits), time.Since(start))
	over := fits + strings.Repeat("x", MaxSize+1-len(fits))
	if _, err := Parse(strings.NewReader(over), keys); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d bytes: err = %v, want ErrTooLarge", len(over), err)
	}
}

func corpusSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "arf", "*.eml"))
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
	f.Add([]byte(report(feedback, "message/rfc822", "base64", delivered(trace.Encode(ref, keys)))))
}

func FuzzParse(f *testing.F) {
	corpusSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Parse(bytes.NewReader(b), keys)
		if err != nil {
			return
		}
		if rep.Format != FormatARF && rep.Format != FormatJMRP {
			t.Fatalf("Format = %q", rep.Format)
		}
		if rep.TraceForged && rep.Recipient != "" {
			t.Fatalf("forged report attributed to %q", rep.Recipient)
		}
		if (rep.Recipient == "") != (len(rep.Recipients) == 0) {
			t.Fatalf("Recipient %q but Recipients %q", rep.Recipient, rep.Recipients)
		}
	})
}
