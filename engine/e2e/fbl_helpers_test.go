package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/testenv"
)

// Feedback-loop tests (issue 6) use 127.20.60-64.x: in each test's /24, .1
// injects (the only relaying source), .50 sends reports
// (no relay rights: report addresses take mail from anyone), .1x are
// sinks and .1xx daemons (two tests may share a /24 on other hosts).

const (
	fblSecret     = "e2e-fbl-secret-0123456789"
	fblAddr       = "fbl@fbl.test"
	bounceAddr    = "bounces@bounce.test"
	unsubDomain   = "unsub.test"
	fblAdminToken = "e2e-admin-token-0123456789"
)

// fblNode is a daemon with [fbl], [bounce], [unsubscribe] and [admin].
type fblNode struct {
	*testenv.Daemon
	net       string // "127.20.6N"
	adminAddr string
	unsubAddr string
}

// fblEnv is a test's DNS server and sink, with rcpt.test routed to the sink.
type fblEnv struct {
	net  string
	dns  *dnstest.Server
	sink *testenv.Sink
}

func newFBLEnv(t *testing.T, net string, sinkHost int, opts ...testenv.SinkOptions) *fblEnv {
	t.Helper()
	dns := startDNS(t)
	ip := fmt.Sprintf("%s.%d", net, sinkHost)
	so := testenv.SinkOptions{}
	if len(opts) > 0 {
		so = opts[0]
	}
	so.Hostname = "mx.rcpt.test"
	sink := testenv.StartSink(t, ip+":25", so)
	mxTo(dns, "rcpt.test", ip)
	return &fblEnv{net: net, dns: dns, sink: sink}
}

// start runs one daemon on net.<host>; extra is appended to the config
// (e.g. [redis], or [fbl] guard settings as fblExtra builds them).
func (e *fblEnv) start(t *testing.T, host int, fblTable string, extra string) *fblNode {
	t.Helper()
	n := &fblNode{net: e.net,
		adminAddr: testenv.FreeAddr(t, fmt.Sprintf("%s.%d", e.net, host)),
		unsubAddr: testenv.FreeAddr(t, fmt.Sprintf("%s.%d", e.net, host)),
	}
	if fblTable == "" {
		fblTable = fblTOML("")
	}
	cfg := testenv.Config{
		Listen:      listenAddr(t, fmt.Sprintf("%s.%d", e.net, host)),
		DNS:         []string{e.dns.Addr()},
		AcctRecords: []string{"d", "b", "t", "f", "rb"},
		Sources:     []testenv.Source{{CIDR: e.net + ".1/32", Relay: true, ProcessXJob: true}},
		Domains:     map[string]testenv.Domain{"*": {RetryAfter: []string{"1s"}}},
		Extra: fblTable + fmt.Sprintf(`
[bounce]
addresses = [%q]

[unsubscribe]
listen = %q
base-url = "http://%s"
mailto-domain = %q

[admin]
listen = %q
token = %q
`, bounceAddr, n.unsubAddr, n.unsubAddr, unsubDomain, n.adminAddr, fblAdminToken) + extra,
	}
	n.Daemon = testenv.StartDaemon(t, cfg.TOML())
	testenv.WaitListening(t, n.adminAddr, 10*time.Second)
	return n
}

// fblTOML renders [fbl] with the test secret and the given extra keys.
func fblTOML(keys string) string {
	return fmt.Sprintf("[fbl]\naddresses = [%q]\nsecret = %q\nfeedback-id = \"{job}:e2e\"\n%s\n", fblAddr, fblSecret, keys)
}

// inject submits one message to rcpt (with an X-Job when job is set) from
// the relaying source and returns the SMTP error, if any.
func (n *fblNode) inject(t *testing.T, rcpt, job string) error {
	t.Helper()
	return n.injectFrom(t, n.net+".1", rcpt, job)
}

// injectFrom is inject from the client address ip.
func (n *fblNode) injectFrom(t *testing.T, ip, rcpt, job string) error {
	t.Helper()
	msg := testenv.GenMessage(0, 300, rcpt)
	if job != "" {
		msg = append([]byte("X-Job: "+job+"\r\n"), msg...)
	}
	in := testenv.NewInjector(n.Addr())
	in.LocalIP = ip
	defer in.Close()
	return in.Send("sender@testenv.sluice", []string{rcpt}, msg)
}

// rcptCode asks the daemon about rcpt at RCPT time, from the relaying
// source, and returns the reply.
func (n *fblNode) rcptCode(t *testing.T, rcpt string) testenv.Reply {
	t.Helper()
	r := testenv.DialRawFrom(t, n.net+".1", n.Addr())
	defer r.Close()
	r.Cmd("EHLO probe.test")
	r.Cmd("MAIL FROM:<probe@testenv.sluice>")
	rep := r.Cmd("RCPT TO:<" + rcpt + ">")
	r.Cmd("QUIT")
	return rep
}

// waitSuppressed polls until rcpt gets 550 5.7.1 at RCPT or within is up.
func (n *fblNode) waitSuppressed(t *testing.T, rcpt string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		rep := n.rcptCode(t, rcpt)
		if rep.Code == 550 && rep.Enh == "5.7.1" {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: RCPT %s answered %s after %v, want 550 5.7.1 within %v", n.Addr(), rcpt, rep, time.Since(start).Round(time.Millisecond), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sendReport submits msg to the report address to, over SMTP, from .50
// (a client with no relay rights), with MAIL FROM from.
func (n *fblNode) sendReport(t *testing.T, from, to string, msg []byte) testenv.Reply {
	t.Helper()
	r := testenv.DialRawFrom(t, n.net+".50", n.Addr())
	defer r.Close()
	r.Cmd("EHLO isp.test")
	rep, err := r.Transaction(from, []string{to}, msg)
	if err != nil {
		t.Fatalf("report to %s: %v", to, err)
	}
	r.Cmd("QUIT")
	return rep
}

// delivered waits for the sink to hold a message to rcpt and returns it.
func (e *fblEnv) delivered(t *testing.T, rcpt string) *testenv.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range e.sink.Messages() {
			for _, r := range m.Rcpts {
				if strings.EqualFold(r, rcpt) {
					return m
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no message to %s at the sink", rcpt)
	return nil
}

// header returns the unfolded value of the first field called name in msg.
func header(msg []byte, name string) string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	for i, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if !ok || !strings.EqualFold(k, name) {
			continue
		}
		for _, c := range lines[i+1:] {
			if c == "" || (c[0] != ' ' && c[0] != '\t') {
				break
			}
			v += " " + strings.TrimSpace(c)
		}
		return strings.TrimSpace(v)
	}
	return ""
}

// redact replaces rcpt everywhere in msg, as an ISP that redacts reports
// does (RFC 6590); our trace header carries it only encoded.
func redact(msg []byte, rcpt string) []byte {
	local, domain, _ := strings.Cut(rcpt, "@")
	msg = bytes.ReplaceAll(msg, []byte(rcpt), []byte("xxxxxxxx@"+domain))
	return bytes.ReplaceAll(msg, []byte(local), []byte("xxxxxxxx"))
}

// headersOf returns the header block of msg, with its final CRLF.
func headersOf(msg []byte) []byte {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	return append(head, "\r\n"...)
}

// arfReport builds an RFC 5965 report about original: the returned
// message whole (message/rfc822) or its header (text/rfc822-headers).
func arfReport(feedbackType string, original []byte, headersOnly bool, fields string) []byte {
	var b bytes.Buffer
	b.WriteString("From: FBL <fbl@isp.test>\r\nTo: " + fblAddr + "\r\nSubject: FW: complaint\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\nMessage-ID: <arf." + fmt.Sprint(time.Now().UnixNano()) + "@isp.test>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"BOUNDARY\"\r\n\r\n")
	b.WriteString("--BOUNDARY\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is an email abuse report.\r\n\r\n")
	b.WriteString("--BOUNDARY\r\nContent-Type: message/feedback-report\r\n\r\n" +
		"Feedback-Type: " + feedbackType + "\r\nUser-Agent: IspFBL/1.0\r\nVersion: 1\r\n" +
		"Original-Mail-From: <sender@testenv.sluice>\r\nArrival-Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"Reporting-MTA: dns; mx.isp.test\r\nSource-IP: 127.0.0.1\r\nReported-Domain: testenv.sluice\r\n" + fields + "\r\n")
	if headersOnly {
		b.WriteString("--BOUNDARY\r\nContent-Type: text/rfc822-headers\r\n\r\n")
		b.Write(headersOf(original))
	} else {
		b.WriteString("--BOUNDARY\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n")
		b.Write(original)
	}
	b.WriteString("\r\n--BOUNDARY--\r\n")
	return b.Bytes()
}

// jmrpReport builds a Microsoft JMRP complaint: the original attached as
// message/rfc822, with X-HmXmrOriginalRecipient added (here redacted).
func jmrpReport(original []byte, hmxmr string) []byte {
	var b bytes.Buffer
	b.WriteString("From: staff@hotmail.com\r\nTo: " + fblAddr + "\r\nSubject: complaint about message from 127.0.0.1\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"JMRP\"\r\n\r\n" +
		"--JMRP\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report for an email message received from IP 127.0.0.1.\r\n\r\n" +
		"--JMRP\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n" +
		"X-HmXmrOriginalRecipient: <" + hmxmr + ">\r\n")
	b.Write(original)
	b.WriteString("\r\n--JMRP--\r\n")
	return b.Bytes()
}

// dsnReport builds an RFC 3464 bounce for rcpt with the original's header.
func dsnReport(rcpt, status, diag string, original []byte) []byte {
	var b bytes.Buffer
	b.WriteString("From: Mail Delivery System <MAILER-DAEMON@mx.remote.test>\r\nTo: " + bounceAddr + "\r\n" +
		"Subject: Undelivered Mail Returned to Sender\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"DSN\"\r\n\r\n" +
		"--DSN\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n" +
		"--DSN\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.remote.test\r\n\r\n" +
		"Final-Recipient: rfc822; " + rcpt + "\r\nAction: failed\r\nStatus: " + status + "\r\n" +
		"Remote-MTA: dns; mx2.remote.test\r\nDiagnostic-Code: smtp; " + diag + "\r\n\r\n" +
		"--DSN\r\nContent-Type: text/rfc822-headers\r\n\r\n")
	b.Write(headersOf(original))
	b.WriteString("\r\n--DSN--\r\n")
	return b.Bytes()
}

// sluiceCLI runs the sluice binary with a config naming n's admin API.
func (n *fblNode) sluiceCLI(t *testing.T, stdin []byte, args ...string) (string, error) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "cli.toml")
	body := fmt.Sprintf("[[listener]]\naddress = \"127.0.0.1:1\"\n\n[admin]\nlisten = %q\ntoken = %q\n", n.adminAddr, fblAdminToken)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	full := append([]string{args[0], args[1], "--config", cfg}, args[2:]...)
	cmd := exec.Command(testenv.BuildSluice(t), full...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// acctOf waits for n records of type typ about rcpt in d's acct files.
func acctOf(t *testing.T, d *fblNode, typ, rcpt string, n int) []testenv.Record {
	t.Helper()
	return d.WaitAcct(t, testenv.All(testenv.OfType(typ), testenv.ForRcpt(rcpt)), n, 5*time.Second)
}
