package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// pySend submits one message with Python's smtplib.
const pySend = `
import smtplib, sys
host, port, frm, to, mid = sys.argv[1:6]
msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: from smtplib\r\nMessage-ID: %s\r\n\r\nHello from Python.\r\n" % (frm, to, mid))
with smtplib.SMTP(host, int(port), local_hostname="python.test", timeout=30) as s:
    refused = s.sendmail(frm, [to], msg)
    if refused:
        sys.exit("refused: %r" % refused)
`

// TestInterop: swaks and Python's smtplib inject successfully; delivery to
// Postfix smtp-sink, through a proxy watching for RFC 2920 pipelining,
// pipelines and records PIPELINING in dlvEsmtpAvailable.
func TestInterop(t *testing.T) {
	t.Parallel()
	swaks := testenv.RequireTool(t, "swaks", "/usr/bin/swaks")
	python := testenv.RequireTool(t, "python3")
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.8.1:25", testenv.SinkOptions{})
	mxTo(dns, "interop.test", "127.20.8.1")
	pf := testenv.StartSMTPSink(t, "127.20.8.3:25")
	proxy := testenv.StartProxy(t, "127.20.8.2:25", pf.Addr)
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.8.254"),
		DNS:    []string{dns.Addr()},
		Domains: map[string]testenv.Domain{
			"*":         {RetryAfter: []string{"1s"}},
			"pipe.test": {Route: proxy.Addr},
		},
	}.TOML())
	host, port, _ := net.SplitHostPort(d.Addr())

	swaksID := testenv.NewMessageID(1)
	out, err := testenv.RunClient(swaks, "--server", d.Addr(), "--helo", "swaks.test",
		"--from", "sender@e2e.test", "--to", "swaks@interop.test",
		"--header", "Message-Id: "+swaksID, "--timeout", "30", "--silent", "2")
	if err != nil {
		t.Errorf("swaks: %v\n%s", err, out)
	}
	pyID := testenv.NewMessageID(2)
	out, err = testenv.RunClient(python, "-c", pySend, host, port, "sender@e2e.test", "python@interop.test", pyID)
	if err != nil {
		t.Errorf("python smtplib: %v\n%s", err, out)
	}

	var pipeIDs []string
	in := testenv.NewInjector(d.Addr())
	for i := range 3 {
		msg := testenv.GenMessage(i, 1000, "a@pipe.test")
		if err := in.Send("sender@e2e.test", []string{"a@pipe.test", "b@pipe.test"}, msg); err != nil {
			t.Fatalf("inject to pipe.test: %v", err)
		}
		pipeIDs = append(pipeIDs, testenv.MessageID(msg))
	}
	in.Close()

	sink.WaitCount(t, 2, 20*time.Second)
	got := sink.MessageIDs()
	for name, id := range map[string]string{"swaks": swaksID, "python": pyID} {
		if got[id] != 1 {
			t.Errorf("%s message %s at the sink %d times", name, id, got[id])
		}
	}
	pf.WaitCount(t, len(pipeIDs), 20*time.Second)
	pgot := pf.MessageIDs()
	for _, id := range pipeIDs {
		if pgot[id] != 1 {
			t.Errorf("smtp-sink has %s %d times", id, pgot[id])
		}
	}
	if proxy.PipelinedTransactions() == 0 {
		t.Errorf("no pipelined transaction among %d on %d connections to smtp-sink", proxy.Transactions(), proxy.Connections())
	}
	t.Logf("pipelined %d of %d transactions", proxy.PipelinedTransactions(), proxy.Transactions())

	recs := d.WaitAcct(t, testenv.All(testenv.OfType("d"), func(r testenv.Record) bool {
		return strings.HasSuffix(r["rcpt"], "@pipe.test")
	}), 2*len(pipeIDs), 10*time.Second)
	for _, r := range recs {
		if !strings.Contains(r["dlvEsmtpAvailable"], "PIPELINING") {
			t.Errorf("d row for %s: dlvEsmtpAvailable %q lacks PIPELINING", r["rcpt"], r["dlvEsmtpAvailable"])
			break
		}
	}
	d.WaitAcct(t, testenv.All(testenv.OfType("d"), func(r testenv.Record) bool {
		return strings.HasSuffix(r["rcpt"], "@interop.test")
	}), 2, 10*time.Second)
}
