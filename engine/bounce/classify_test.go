package bounce

import (
	"regexp"
	"testing"

	"github.com/sluice-mta/sluice/engine/reply"
)

func TestCategories(t *testing.T) {
	cats := Categories()
	if len(cats) != 17 {
		t.Fatalf("%d categories, want the 17 of PowerMTA", len(cats))
	}
	seen := map[string]bool{}
	for _, c := range cats {
		if seen[c] || !IsCategory(c) {
			t.Errorf("category %q duplicated or not recognized", c)
		}
		seen[c] = true
	}
	cats[0] = "changed"
	if Categories()[0] != BadMailbox {
		t.Error("Categories returns shared state")
	}
	for _, s := range []string{"", "Bad-Mailbox", "bounce", "other "} {
		if IsCategory(s) {
			t.Errorf("IsCategory(%q) = true", s)
		}
	}
}

// TestClassify covers every category with replies seen in the wild, and the
// order of the rules: text first, then the enhanced status code.
func TestClassify(t *testing.T) {
	c := NewClassifier(nil)
	for _, tc := range classifyCases {
		r := parseReply(tc.reply)
		if got := c.Classify(r.Code, r.Status.String(), r.Text); got != tc.want {
			t.Errorf("Classify(%q) = %s, want %s", tc.reply, got, tc.want)
		}
	}
}

var classifyCases = []struct {
	reply, want string
}{
	{"550 5.1.1 <a@d1.test>: user unknown", BadMailbox},
	{"452 4.2.2 mailbox full", QuotaIssues},
	{"550 5.7.1 relaying denied", RelayingIssues}, // text rules run before status codes

	{"550 5.1.1 <a@d1.test>: Recipient address rejected: User unknown in virtual mailbox table", BadMailbox},
	{"550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address", BadMailbox},
	{"550 No such user here", BadMailbox},
	{"550 Requested action not taken: mailbox unavailable", BadMailbox},
	{"550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", BadMailbox},
	{"550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", BadMailbox},
	{"554 delivery error: dd This user doesn't have a yahoo.com account", BadMailbox},
	{"550 Invalid recipient <a@d1.test>", BadMailbox},
	{"553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", RelayingIssues}, // qmail
	{"550 5.1.6 recipient no longer on server", BadMailbox},

	{"550 5.2.1 The email account that you tried to reach is disabled.", InactiveMailbox},
	{"550 5.2.1 This mailbox has been deactivated", InactiveMailbox},
	{"554 30 Sorry, your message to a@d1.test cannot be delivered. This account has been disabled or discontinued", InactiveMailbox},
	{"550 account suspended", InactiveMailbox},

	{"552 5.2.2 <a@d1.test>: user is over quota", QuotaIssues},
	{"552-5.2.2 The recipient's inbox is out of storage space and inactive.", QuotaIssues},
	{"452 4.3.1 Insufficient system storage", QuotaIssues},
	{"552 Requested mail action aborted: exceeded storage allocation", QuotaIssues},
	{"450 4.2.2 mailbox size limit exceeded", QuotaIssues},

	{"554 5.7.1 <a@d1.test>: Relay access denied", RelayingIssues},
	{"550 5.7.1 Unable to relay", RelayingIssues},
	{"550 relay not permitted", RelayingIssues},

	{"554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", SpamRelated},
	{"550 5.7.1 Our system has detected that this message is likely unsolicited mail.", SpamRelated},
	{"550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).", SpamRelated},
	{"421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints", SpamRelated},
	{"553 5.7.2 [TSS09] All messages from 192.0.2.1 will be permanently deferred", SpamRelated},
	{"421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address", SpamRelated},
	{"451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.", SpamRelated},
	{"550 Your IP is blacklisted", SpamRelated},
	{"421 4.7.0 low reputation", SpamRelated},

	{"554 5.7.1 Virus found in message", VirusRelated},
	{"550 Message rejected: malware detected", VirusRelated},

	{"450 4.2.0 <a@d1.test>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/", PolicyRelated},
	{"451 4.7.1 Please try again later (greylisting)", PolicyRelated},
	{"550-5.7.26 This mail is unauthenticated, which poses a security risk to the sender and Gmail users. Our system has detected that this message does not meet authentication requirements; DMARC policy of the sending domain", PolicyRelated},
	{"550 5.7.515 Access denied, sending domain does not meet the required authentication level.", PolicyRelated},
	{"450 4.2.1 The user you are trying to contact is receiving mail too quickly.", PolicyRelated},
	{"421 4.1.0 192.0.2.1 Throttled - try again later. #RL000003", PolicyRelated},
	{"554 5.7.9 Message not accepted for policy reasons.", PolicyRelated},
	{"550 5.7.0 <s@d.test>... Please use the smtp server of your ISP.", PolicyRelated},
	{"530 5.7.0 Must issue a STARTTLS command first", PolicyRelated},
	{"550 5.7.1 Message rejected", PolicyRelated}, // by status
	{"554 5.7.13 whatever", PolicyRelated},

	{"552 5.3.4 Message size exceeds fixed maximum message size", ContentRelated},
	{"552 message too large", ContentRelated},
	{"554 5.6.1 Prohibited attachment type", ContentRelated},
	{"554 5.6.0 something", ContentRelated},

	{"550 5.1.2 <a@nowhere.test>: host not found", BadDomain},
	{"Host or domain name not found. Name service error for name=d1.test type=A: Host not found", BadDomain},
	{"556 5.1.10 Recipient address has null MX", BadDomain},
	{"550 5.1.2 bad destination", BadDomain}, // by status
	{"Host or domain name not found. Name service error for name=d1.test type=MX: Host not found, try again", RoutingErrors},
	{"451 4.4.3 something", RoutingErrors}, // DNS lookup failure: not a name that does not exist
	{"554 5.4.6 mail for d1.test loops back to myself", RoutingErrors},
	{"554 5.4.6 too many hops", RoutingErrors},

	{"451 4.4.7 message expired, too long in queue", MessageExpired},
	{"retry timeout exceeded", MessageExpired},
	{"4.4.7 delivery time expired", MessageExpired},

	{"connect to mx.d1.test[192.0.2.1]:25: Connection timed out", NoAnswerFromHost},
	{"connect to mx.d1.test[192.0.2.1]:25: Connection refused", NoAnswerFromHost},
	{"connect to mx.d1.test[192.0.2.1]:25: No route to host", NoAnswerFromHost},
	{"421 4.4.1 something", NoAnswerFromHost},
	{"conversation with mx.d1.test[192.0.2.1] timed out while receiving the initial server greeting", BadConnection},
	{"lost connection with mx.d1.test[192.0.2.1] while sending RCPT TO", BadConnection},
	{"TLS handshake failed", BadConnection},
	{"421 4.4.2 something", BadConnection},

	{"550 5.1.8 <s@d.test>: Sender address rejected: Domain not found", InvalidSender},
	{"553 5.1.7 invalid sender", InvalidSender},
	{"550 5.1.7 something", InvalidSender}, // by status
	{"450 4.1.8 something", InvalidSender},

	{"501 5.5.4 Syntax error in parameters", ProtocolErrors},
	{"503 5.5.1 Bad sequence of commands", ProtocolErrors},
	{"452 4.5.3 Too many recipients", ProtocolErrors},
	{"554 5.5.0 something", ProtocolErrors},

	{"554 5.3.5 something", BadConfiguration},
	{"450 4.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]", BadConfiguration},
	{"504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname", BadConfiguration},

	{"550 5.0.0 something", Other},
	{"550 something odd", Other},
	{"", Other},
	{"250 2.0.0 OK", Other},
	{"550 5.7.1 Message rejected as \u017fpam", SpamRelated}, // long s: (?i) folds it to s
}

// parseReply splits "550 5.1.1 text" as the delivery code would; a reply
// without a code is a local failure text.
func parseReply(s string) *reply.Error {
	var code int
	if len(s) >= 4 && s[0] >= '2' && s[0] <= '5' && (s[3] == ' ' || s[3] == '-') {
		code = int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
		return reply.Parse(code, s[4:])
	}
	return &reply.Error{Text: s}
}

func TestClassifyStatusInText(t *testing.T) {
	c := NewClassifier(nil)
	if got := c.Classify(0, "", "4.4.7 something"); got != MessageExpired {
		t.Errorf("status at the start of the text: got %s", got)
	}
	if got := c.Classify(550, "bogus", "whatever"); got != Other {
		t.Errorf("malformed status: got %s", got)
	}
}

func TestOperatorRules(t *testing.T) {
	c := NewClassifier([]Rule{
		{Pattern: nil, Category: BadDomain}, // ignored
		{Pattern: regexp.MustCompile(`(?i)^550 5\.1\.1 .*vacation`), Category: Other},
		{Pattern: regexp.MustCompile(`(?i)mailbox full`), Category: InactiveMailbox},
		{Pattern: regexp.MustCompile(`(?i)mailbox`), Category: PolicyRelated},
	})
	cases := []struct {
		code         int
		status, text string
		want         string
	}{
		{550, "5.1.1", "user on vacation", Other},          // operator rule sees code and status
		{452, "4.2.2", "Mailbox full", InactiveMailbox},    // first operator match wins over built-ins
		{550, "5.1.1", "no such mailbox", PolicyRelated},   // second operator rule
		{550, "5.1.1", "user unknown", BadMailbox},         // falls through to the built-ins
		{550, "", "5.7.1 relaying denied", RelayingIssues}, // status read from the text
	}
	for _, tc := range cases {
		if got := c.Classify(tc.code, tc.status, tc.text); got != tc.want {
			t.Errorf("Classify(%d, %q, %q) = %s, want %s", tc.code, tc.status, tc.text, got, tc.want)
		}
	}
}

func TestParseDiagnostic(t *testing.T) {
	cases := []struct {
		in         string
		code       int
		status     string
		text       string
		classifies string
	}{
		{"smtp; 550 5.1.1 <a@d1.test>: user unknown", 550, "5.1.1", "<a@d1.test>: user unknown", BadMailbox},
		{"SMTP;550 5.2.2 mailbox full", 550, "5.2.2", "mailbox full", QuotaIssues},
		{"550 5.1.1 <k@d.test>... User Unknown ", 550, "5.1.1", "<k@d.test>... User Unknown", BadMailbox},
		{"smtp; 550-5.1.1 The email account\n    that you tried to reach does not exist.", 550, "5.1.1", "The email account that you tried to reach does not exist.", BadMailbox},
		{"X-Postfix; Host or domain name not found", 0, "", "Host or domain name not found", BadDomain},
		{"smtp; 421 4.4.2 x", 421, "4.4.2", "x", BadConnection},
		{"smtp; 550 4.2.2 mismatched class", 550, "", "4.2.2 mismatched class", QuotaIssues},
		{"X-Unix; 71", 0, "", "71", Other},
		{"no type here; 550 5.1.1 x", 0, "", "no type here; 550 5.1.1 x", Other},
		{"", 0, "", "", Other},
	}
	c := NewClassifier(nil)
	for _, tc := range cases {
		code, st, text := ParseDiagnostic(tc.in)
		if code != tc.code || st != tc.status || text != tc.text {
			t.Errorf("ParseDiagnostic(%q) = %d, %q, %q; want %d, %q, %q", tc.in, code, st, text, tc.code, tc.status, tc.text)
		}
		if got := c.ClassifyDiagnostic(tc.in); got != tc.classifies {
			t.Errorf("ClassifyDiagnostic(%q) = %s, want %s", tc.in, got, tc.classifies)
		}
	}
}

func TestStatusCategory(t *testing.T) {
	cases := map[string]string{
		"5.1.1": BadMailbox, "4.1.1": BadMailbox, "5.1.0": BadMailbox, "5.1.6": BadMailbox,
		"5.1.2": BadDomain, "5.1.10": BadDomain, "5.1.7": InvalidSender, "5.1.8": InvalidSender,
		"5.2.1": InactiveMailbox, "5.2.2": QuotaIssues, "4.2.2": QuotaIssues, "5.2.3": ContentRelated,
		"4.3.1": QuotaIssues, "5.3.4": ContentRelated, "5.3.5": BadConfiguration,
		"4.4.1": NoAnswerFromHost, "4.4.2": BadConnection, "4.4.3": RoutingErrors, "5.4.4": RoutingErrors,
		"4.4.6": RoutingErrors, "5.4.6": RoutingErrors, "4.4.7": MessageExpired, "5.4.7": MessageExpired,
		"5.5.0": ProtocolErrors, "5.5.2": ProtocolErrors, "5.6.0": ContentRelated, "5.6.3": ContentRelated,
		"5.7.1": PolicyRelated, "5.7.26": PolicyRelated, "4.7.0": PolicyRelated,
		"5.0.0": Other, "4.0.0": Other, "5.2.0": Other, "4.3.0": Other, "4.4.5": Other, "5.1.9": Other, "5.8.1": Other,
	}
	for s, want := range cases {
		st, ok := reply.ParseStatus(s)
		if !ok {
			t.Fatalf("bad status %q in test", s)
		}
		if got := statusCategory(st); got != want {
			t.Errorf("statusCategory(%s) = %s, want %s", s, got, want)
		}
	}
}

func TestSuppress(t *testing.T) {
	for _, c := range Categories() {
		want := c == BadMailbox || c == BadDomain || c == InactiveMailbox
		if Suppress(c) != want {
			t.Errorf("Suppress(%s) = %v", c, !want)
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	c := NewClassifier(nil)
	for b.Loop() {
		c.Classify(451, "4.7.650", "The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation.")
		c.Classify(550, "5.0.0", "something nobody matches at all, so every rule is tried")
	}
}
