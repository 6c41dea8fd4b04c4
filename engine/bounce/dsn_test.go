package bounce

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

var (
	arrival = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	now     = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
)

const original = "From: Sender <s@src.test>\nTo: a@d1.test\nSubject: Hello\nMessage-ID: <orig@src.test>\n\nBody line one.\nBody line two.\n"

func sampleDSN() *DSN {
	return &DSN{
		ReportingMTA: "mta1.sluice.test",
		EnvID:        "job42-1",
		ArrivalDate:  arrival,
		To:           "s@src.test",
		Recipients: []DSNRecipient{
			{
				Final: "a@d1.test", Original: "rfc822;A@D1.test", Action: "failed", Status: "5.1.1",
				RemoteMTA: "mx.d1.test", Diagnostic: "smtp; 550 5.1.1 <a@d1.test>: user unknown",
				LastAttempt: now.Add(-time.Minute),
			},
			{
				Final: "b@d2.test", Action: "delayed", Status: "4.4.1",
				Diagnostic:  "connect to mx.d2.test[192.0.2.1]:25: Connection timed out",
				LastAttempt: now.Add(-2 * time.Minute), WillRetryUntil: now.Add(4 * 24 * time.Hour),
			},
		},
		Original:  []byte(original),
		Now:       now,
		MessageID: "dsn1@mta1.sluice.test",
	}
}

// parsedDSN is a DSN read back with the standard library.
type parsedDSN struct {
	header  mail.Header
	parts   []*multipart.Part
	bodies  [][]byte
	perMsg  textproto.MIMEHeader
	perRcpt []textproto.MIMEHeader
}

func parseDSN(t *testing.T, raw []byte) *parsedDSN {
	t.Helper()
	if bytes.ContainsAny(bytes.ReplaceAll(raw, []byte("\r\n"), nil), "\r\n") {
		t.Fatalf("bare CR or LF in DSN")
	}
	for _, l := range strings.Split(string(raw), "\r\n") {
		if len(l) > maxLine {
			t.Fatalf("line of %d bytes", len(l))
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("read DSN: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	p := &parsedDSN{header: m.Header}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("next part: %v", err)
		}
		b, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		p.parts = append(p.parts, part)
		p.bodies = append(p.bodies, b)
	}
	if len(p.parts) < 2 {
		t.Fatalf("%d parts", len(p.parts))
	}
	// RFC 3464 §2.1: per-message fields, then blank-line-separated groups.
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(p.bodies[1])))
	if p.perMsg, err = tr.ReadMIMEHeader(); err != nil {
		t.Fatalf("per-message fields: %v", err)
	}
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			p.perRcpt = append(p.perRcpt, h)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("per-recipient fields: %v", err)
		}
	}
	return p
}

func checkFields(t *testing.T, what string, h interface{ Get(string) string }, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s %s = %q, want %q", what, k, got, v)
		}
	}
}

func TestDSNBytes(t *testing.T) {
	raw, err := sampleDSN().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, raw)
	checkFields(t, "header", p.header, map[string]string{
		"From":           `"Mail Delivery System" <MAILER-DAEMON@mta1.sluice.test>`,
		"To":             "<s@src.test>",
		"Subject":        "Delivery Status Notification (Failure)",
		"Date":           "Sat, 28 Nov 2026 10:00:00 +0000",
		"Message-ID":     "<dsn1@mta1.sluice.test>",
		"Auto-Submitted": "auto-replied",
		"MIME-Version":   "1.0",
	})
	if from, err := p.header.AddressList("From"); err != nil || from[0].Address != "MAILER-DAEMON@mta1.sluice.test" {
		t.Errorf("From: %v %v", from, err)
	}
	if len(p.parts) != 3 {
		t.Fatalf("%d parts, want 3", len(p.parts))
	}
	if ct := p.parts[0].Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("part 1 is %q", ct)
	}
	human := string(p.bodies[0])
	for _, s := range []string{"mta1.sluice.test", "<a@d1.test>", "550 5.1.1 <a@d1.test>: user unknown", "<b@d2.test>", "delayed"} {
		if !strings.Contains(human, s) {
			t.Errorf("human part lacks %q:\n%s", s, human)
		}
	}
	if ct := p.parts[1].Header.Get("Content-Type"); ct != "message/delivery-status" {
		t.Errorf("part 2 is %q", ct)
	}
	checkFields(t, "per-message", p.perMsg, map[string]string{
		"Reporting-MTA":        "dns; mta1.sluice.test",
		"Original-Envelope-Id": "job42-1",
		"Arrival-Date":         "Sat, 28 Nov 2026 09:00:00 +0000",
	})
	if len(p.perRcpt) != 2 {
		t.Fatalf("%d recipient groups, want 2", len(p.perRcpt))
	}
	checkFields(t, "rcpt 1", p.perRcpt[0], map[string]string{
		"Final-Recipient":    "rfc822; a@d1.test",
		"Original-Recipient": "rfc822; A@D1.test",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Remote-MTA":         "dns; mx.d1.test",
		"Diagnostic-Code":    "smtp; 550 5.1.1 <a@d1.test>: user unknown",
		"Last-Attempt-Date":  "Sat, 28 Nov 2026 09:59:00 +0000",
		"Will-Retry-Until":   "", // failed: RFC 3464 §2.3.9 is for delayed only
	})
	checkFields(t, "rcpt 2", p.perRcpt[1], map[string]string{
		"Final-Recipient":  "rfc822; b@d2.test",
		"Action":           "delayed",
		"Status":           "4.4.1",
		"Remote-MTA":       "",
		"Diagnostic-Code":  "X-Sluice; connect to mx.d2.test[192.0.2.1]:25: Connection timed out",
		"Will-Retry-Until": "Wed, 02 Dec 2026 10:00:00 +0000",
	})
	// RET=HDRS (the default): headers only.
	if ct := p.parts[2].Header.Get("Content-Type"); ct != "text/rfc822-headers" {
		t.Errorf("part 3 is %q", ct)
	}
	h := string(p.bodies[2])
	if !strings.Contains(h, "Subject: Hello\r\n") || strings.Contains(h, "Body line") {
		t.Errorf("headers part:\n%s", h)
	}
}

func TestDSNReturnFull(t *testing.T) {
	d := sampleDSN()
	d.Ret = "FULL"
	d.Recipients = d.Recipients[1:] // only the delayed one
	raw, err := d.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, raw)
	if s := p.header.Get("Subject"); s != "Delivery Status Notification (Delay)" {
		t.Errorf("Subject %q", s)
	}
	if ct := p.parts[2].Header.Get("Content-Type"); ct != "message/rfc822" {
		t.Fatalf("part 3 is %q", ct)
	}
	m, err := mail.ReadMessage(bytes.NewReader(p.bodies[2]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(m.Body)
	if m.Header.Get("Message-ID") != "<orig@src.test>" || string(body) != "Body line one.\r\nBody line two.\r\n" {
		t.Errorf("returned message: %v %q", m.Header, body)
	}
}

func TestDSNDefaults(t *testing.T) {
	d := &DSN{
		ReportingMTA: "mta1.sluice.test",
		To:           "<s@src.test>",
		Recipients:   []DSNRecipient{{Final: "a@d1.test"}},
	}
	raw, err := d.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, raw)
	if len(p.parts) != 2 {
		t.Errorf("%d parts without an original, want 2", len(p.parts))
	}
	id := p.header.Get("Message-ID")
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@mta1.sluice.test>") {
		t.Errorf("generated Message-ID %q", id)
	}
	if _, err := p.header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	checkFields(t, "rcpt", p.perRcpt[0], map[string]string{"Action": "failed", "Status": "5.0.0"})
	checkFields(t, "header", p.header, map[string]string{"To": "<s@src.test>"})
	raw2, _ := d.Bytes()
	if parseDSN(t, raw2).header.Get("Message-ID") == id {
		t.Error("two DSNs got the same generated Message-ID")
	}
}

func TestDSNErrors(t *testing.T) {
	cases := map[string]func(d *DSN){
		"null sender":     func(d *DSN) { d.To = "" },
		"null sender <>":  func(d *DSN) { d.To = "<>" },
		"no recipients":   func(d *DSN) { d.Recipients = nil },
		"no reporter":     func(d *DSN) { d.ReportingMTA = "" },
		"bad action":      func(d *DSN) { d.Recipients[0].Action = "bounced" },
		"bad status":      func(d *DSN) { d.Recipients[0].Status = "550" },
		"no final":        func(d *DSN) { d.Recipients[0].Final = " " },
		"injected sender": func(d *DSN) { d.To = "s@src.test\r\nBcc: x@evil.test" },
	}
	for name, mutate := range cases {
		d := sampleDSN()
		mutate(d)
		if _, err := d.Bytes(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	d := sampleDSN()
	d.To = ""
	if _, err := d.Bytes(); !errors.Is(err, ErrNullSender) {
		t.Errorf("null sender: %v, want ErrNullSender", err)
	}
}

// TestDSNHostileText checks that reply text from a remote server can neither
// add fields nor break the line limits.
func TestDSNHostileText(t *testing.T) {
	d := sampleDSN()
	d.Recipients[0].Diagnostic = "smtp; 550 5.1.1 gone\r\nX-Injected: yes\r\n\r\nFinal-Recipient: rfc822; evil@x.test " +
		strings.Repeat("word ", 300) + strings.Repeat("x", 2500)
	d.Recipients[0].RemoteMTA = "mx.d1.test\nX-Also: yes"
	d.Original = []byte("Subject: crlf\r\nX-Bare: cr\rX-Lf: lf\n\nbody")
	raw, err := d.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, raw) // also checks CRLF and the 998-byte limit
	if len(p.perRcpt) != 2 {
		t.Fatalf("%d recipient groups, want 2", len(p.perRcpt))
	}
	for _, g := range p.perRcpt {
		if g.Get("X-Injected") != "" || g.Get("X-Also") != "" {
			t.Errorf("field injected: %v", g)
		}
	}
	diag := p.perRcpt[0].Get("Diagnostic-Code")
	if !strings.HasPrefix(diag, "smtp; 550 5.1.1 gone X-Injected: yes Final-Recipient") {
		t.Errorf("Diagnostic-Code %.80q...", diag)
	}
	if got := string(p.bodies[2]); got != "Subject: crlf\r\nX-Bare: cr\r\nX-Lf: lf\r\n" {
		t.Errorf("headers part %q", got)
	}
}

func TestDSNExample(t *testing.T) {
	raw, err := sampleDSN().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		t.Logf("%s", raw)
	}
}

func TestDiagnosticType(t *testing.T) {
	cases := map[string]string{
		"550 5.1.1 gone":               "smtp; 550 5.1.1 gone",
		"550-5.1.1 gone":               "smtp; 550-5.1.1 gone",
		"smtp;550 gone":                "smtp; 550 gone",
		"X-Postfix; host not found":    "X-Postfix; host not found",
		"connect to x: timed out":      "X-Sluice; connect to x: timed out",
		"5500 odd":                     "X-Sluice; 5500 odd",
		"user <a;b@d.test>: 550 weird": "X-Sluice; user <a;b@d.test>: 550 weird",
	}
	for in, want := range cases {
		if got := diagnostic(in); got != want {
			t.Errorf("diagnostic(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestToCRLF(t *testing.T) {
	cases := map[string]string{
		"":           "",
		"a":          "a\r\n",
		"a\nb":       "a\r\nb\r\n",
		"a\r\nb\r\n": "a\r\nb\r\n",
		"a\rb\r":     "a\r\nb\r\n",
		"a\n\r\nb":   "a\r\n\r\nb\r\n",
	}
	for in, want := range cases {
		if got := string(toCRLF([]byte(in))); got != want {
			t.Errorf("toCRLF(%q) = %q, want %q", in, got, want)
		}
	}
}
