package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// pyTLSSend is a python3 smtplib client: argv is mode (starttls, ssl or
// plain), host, port, source IP, CA file, user ("" for no AUTH), password,
// REQUIRETLS (0/1), sender, recipient. It prints "OK <extensions>" or the
// SMTP error's "code text", and exits 0 either way.
const pyTLSSend = `
import smtplib, ssl, sys
mode, host, port, src, cafile, user, pw, reqtls, frm, to = sys.argv[1:11]
ctx = ssl.create_default_context(cafile=cafile)
try:
    if mode == "ssl":
        s = smtplib.SMTP_SSL(host, int(port), source_address=(src, 0), context=ctx, timeout=10)
    else:
        s = smtplib.SMTP(host, int(port), source_address=(src, 0), timeout=10)
    s.ehlo("client.test")
    if mode == "starttls":
        s.starttls(context=ctx)
        s.ehlo("client.test")
    if user:
        s.login(user, pw)
    opts = ["REQUIRETLS"] if reqtls == "1" else []
    msg = "From: <%s>\r\nTo: <%s>\r\nSubject: tls\r\nMessage-ID: <%s>\r\n\r\nhello\r\n" % (frm, to, to)
    s.sendmail(frm, [to], msg, mail_options=opts)
    print("OK", " ".join(sorted(s.esmtp_features)))
    s.quit()
except smtplib.SMTPResponseException as e:
    print(e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPRecipientsRefused as e:
    code, text = list(e.recipients.values())[0]
    print(code, text.decode())
`

// pyTLS runs pyTLSSend and returns its one-line answer.
func pyTLS(t *testing.T, args ...string) string {
	t.Helper()
	py := testenv.RequireTool(t, "python3")
	out, err := testenv.RunClient(py, append([]string{"-c", pyTLSSend}, args...)...)
	if err != nil {
		t.Fatalf("python3 %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(out)
}

// tlsDaemon starts a daemon whose listener has a certificate from ca for
// its IP; implicit selects implicit TLS.
func tlsDaemon(t *testing.T, ca *testenv.CA, ip, dnsAddr string, implicit bool, sources []testenv.Source, extra string) *testenv.Daemon {
	t.Helper()
	cert, key := ca.WriteCert(t, t.TempDir(), ip, "sluice.test")
	return testenv.StartDaemon(t, testenv.Config{
		Listen:      listenAddr(t, ip),
		DNS:         []string{dnsAddr},
		TLSCert:     cert,
		TLSKey:      key,
		ImplicitTLS: implicit,
		Sources:     sources,
		Users:       []testenv.User{{Name: "alice", Password: "s3cret"}},
		Extra:       extra,
	}.TOML())
}

// TestTLSInbound: STARTTLS on a listener with tls-cert; AUTH only over TLS
// unless the source allows plain AUTH; REQUIRETLS refused without TLS and
// offered with it; an implicit-TLS listener; and swaks --tls interop.
func TestTLSInbound(t *testing.T) {
	t.Parallel()
	const (
		noPlainIP = "127.20.75.10" // AUTH needs TLS
		plainIP   = "127.20.75.11" // allow-unencrypted-plain-auth
		relayIP   = "127.20.75.12" // always-allow-relaying
	)
	ca := testenv.NewCA(t)
	caFile := ca.WriteCA(t, t.TempDir())
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.75.1:25", testenv.SinkOptions{})
	mxTo(dns, "in-tls.test", "127.20.75.1")
	sources := []testenv.Source{
		{CIDR: noPlainIP + "/32"},
		{CIDR: plainIP + "/32", PlainAuth: true},
		{CIDR: relayIP + "/32", Relay: true},
	}
	d := tlsDaemon(t, ca, "127.20.75.254", dns.Addr(), false, sources, "")
	host, port, _ := net.SplitHostPort(d.Addr())

	t.Run("auth-needs-tls", func(t *testing.T) {
		r := testenv.DialRawFrom(t, noPlainIP, d.Addr())
		if rep := r.Cmd("EHLO client.test"); strings.Contains(rep.String(), "AUTH") || !strings.Contains(rep.String(), "STARTTLS") {
			t.Errorf("plaintext EHLO: %q, want STARTTLS and no AUTH", rep.String())
		}
		if rep := r.Cmd("AUTH PLAIN AGFsaWNlAHMzY3JldA=="); rep.Code != 538 || rep.Enh != "5.7.11" {
			t.Errorf("AUTH without TLS: %v, want 538 5.7.11", rep)
		}
		if out := pyTLS(t, "starttls", host, port, noPlainIP, caFile, "alice", "s3cret", "0", "s@e2e.test", "tls-auth@in-tls.test"); !strings.HasPrefix(out, "OK ") || !strings.Contains(out, "requiretls") {
			t.Errorf("AUTH after STARTTLS: %s, want OK with REQUIRETLS offered", out)
		}
	})
	t.Run("plain-auth-source", func(t *testing.T) {
		if out := pyTLS(t, "plain", host, port, plainIP, caFile, "alice", "s3cret", "0", "s@e2e.test", "plain-auth@in-tls.test"); !strings.HasPrefix(out, "OK ") {
			t.Errorf("plain AUTH from a permitted source: %s", out)
		}
	})
	t.Run("requiretls-needs-tls", func(t *testing.T) {
		r := testenv.DialRawFrom(t, relayIP, d.Addr())
		if rep := r.Cmd("EHLO client.test"); strings.Contains(rep.String(), "REQUIRETLS") {
			t.Errorf("REQUIRETLS offered before TLS: %q", rep.String())
		}
		// Not offered, so refused as an unknown parameter (RFC 5321
		// §4.1.1.11: 555); 530 5.7.10 would do as well.
		if rep := r.Cmd("MAIL FROM:<s@e2e.test> REQUIRETLS"); rep.Code != 555 && rep.Code != 530 {
			t.Errorf("REQUIRETLS in plaintext: %v, want 555 or 530", rep)
		}
	})
	t.Run("swaks-tls", func(t *testing.T) {
		swaks := testenv.RequireTool(t, "swaks", "/usr/bin/swaks")
		out, err := testenv.RunClient(swaks, "--server", d.Addr(), "--local-interface", relayIP, "--tls",
			"--from", "s@e2e.test", "--to", "swaks@in-tls.test", "--header", "Message-ID: <swaks@in-tls.test>")
		if err != nil || !strings.Contains(out, "<~  250") {
			t.Errorf("swaks --tls: %v\n%s", err, out)
		}
	})
	for _, rcpt := range []string{"tls-auth@in-tls.test", "plain-auth@in-tls.test", "swaks@in-tls.test"} {
		d.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt(rcpt)), 1, 20*time.Second)
	}
	if n := sink.Count(); n != 3 {
		t.Errorf("sink got %d messages, want 3", n)
	}

	t.Run("implicit-tls", func(t *testing.T) {
		di := tlsDaemon(t, ca, "127.20.75.253", dns.Addr(), true, sources, "")
		ihost, iport, _ := net.SplitHostPort(di.Addr())
		out := pyTLS(t, "ssl", ihost, iport, noPlainIP, caFile, "alice", "s3cret", "0", "s@e2e.test", "implicit@in-tls.test")
		if !strings.HasPrefix(out, "OK ") || strings.Contains(out, "starttls") {
			t.Errorf("implicit TLS session: %s, want OK without STARTTLS offered", out)
		}
		di.WaitAcct(t, testenv.All(testenv.OfType("d"), testenv.ForRcpt("implicit@in-tls.test")), 1, 20*time.Second)
		// A plaintext client gets no SMTP greeting.
		c, err := net.DialTimeout("tcp", di.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 3)
		if n, _ := c.Read(buf); string(buf[:n]) == "220" {
			t.Error("implicit-TLS listener greeted in plaintext")
		}
	})
}
