package smtpd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// Real clients against the engine: swaks (pipelined, and STARTTLS with
// AUTH), Python's smtplib, and Postfix's smtp-source.

func runPeer(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func TestSwaks(t *testing.T) {
	swaks := testenv.RequireTool(t, "swaks")
	b := &recorder{}
	addr, _ := startServer(t, "127.40.2.1", b, func(s *Server) { s.TLSConfig = selfSigned(t) })
	out := runPeer(t, swaks, "--server", addr, "--from", "a@mail.test", "--to", "b@rcpt.test,c@rcpt.test",
		"--pipeline", "--header", "Subject: pipelined", "--body", "line\n.dot line\n")
	// Pipelined: the recipients left before the reply to MAIL was read.
	if r, m := strings.Index(out, "-> RCPT TO:<c@rcpt.test>"), strings.Index(out, "<-  250 2.1.0"); r < 0 || m < 0 || r > m {
		t.Errorf("swaks did not pipeline (RCPT at %d, MAIL reply at %d):\n%s", r, m, out)
	}
	out = runPeer(t, swaks, "--server", addr, "--from", "a@mail.test", "--to", "b@rcpt.test",
		"--tls", "--auth", "PLAIN", "--auth-user", "user", "--auth-password", "pass", "--body", "secret")
	if !strings.Contains(out, "235 2.7.0") {
		t.Errorf("no AUTH success in:\n%s", out)
	}
	m := b.messages()
	if len(m) != 2 {
		t.Fatalf("%d messages", len(m))
	}
	if len(m[0].rcpts) != 2 || !strings.Contains(m[0].body, "\r\n.dot line\r\n") {
		t.Errorf("pipelined message: %+v", m[0])
	}
	if !m[1].tls || m[1].user != "user" || !strings.Contains(m[1].body, "secret") {
		t.Errorf("TLS message: tls=%v user=%q", m[1].tls, m[1].user)
	}
}

const pyClient = `
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
s = smtplib.SMTP(host, int(port), timeout=10)
s.ehlo("py.test")
assert s.has_extn("smtputf8") and s.has_extn("dsn") and s.has_extn("chunking")
s.login("user", "pass")
body = "Subject: from python\r\n\r\n.leading dot\r\n" + "x" * 990 + "\r\n"
refused = s.sendmail("a@mail.test", ["b@rcpt.test", "c@rcpt.test"], body,
    mail_options=["BODY=8BITMIME", "RET=HDRS", "ENVID=py+2B1"],
    rcpt_options=["NOTIFY=FAILURE,DELAY"])
assert refused == {}, refused
s.sendmail("dé@mail.test", ["ü@rcpt.test"], "Subject: utf8\r\n\r\nok\r\n".encode(), mail_options=["SMTPUTF8"])
try:
    s.sendmail("a@mail.test", ["b@rcpt.test"], "y" * 2000 + "\r\n")
    sys.exit("long line accepted")
except smtplib.SMTPDataError as e:
    assert e.smtp_code == 554, e
s.quit()
print("ok")
`

func TestPythonSmtplib(t *testing.T) {
	py := testenv.RequireTool(t, "python3")
	b := &recorder{}
	addr, _ := startServer(t, "127.40.2.2", b, nil)
	script := filepath.Join(t.TempDir(), "client.py")
	must(t, os.WriteFile(script, []byte(pyClient), 0o600))
	if out := runPeer(t, py, script, addr); !strings.Contains(out, "ok") {
		t.Fatalf("python: %s", out)
	}
	m := b.messages()
	if len(m) != 2 {
		t.Fatalf("%d messages", len(m))
	}
	if m[0].user != "user" || m[0].mail.EnvelopeID != "py+1" || len(m[0].ropts) != 2 || len(m[0].ropts[1].Notify) != 2 {
		t.Errorf("first message: %+v", m[0])
	}
	if !strings.Contains(m[0].body, "\r\n.leading dot\r\n") {
		t.Errorf("dot lost: %q", m[0].body)
	}
	if !m[1].mail.UTF8 || m[1].from != "dé@mail.test" || m[1].rcpts[0] != "ü@rcpt.test" {
		t.Errorf("SMTPUTF8 message: %+v", m[1])
	}
}

func TestSmtpSource(t *testing.T) {
	src := testenv.RequireTool(t, "smtp-source", "/usr/sbin/smtp-source")
	b := &recorder{}
	addr, _ := startServer(t, "127.40.2.3", b, nil)
	// 4 sessions, 200 messages of 5 KB, 3 recipients each, many per connection (-d).
	runPeer(t, src, "-s", "4", "-m", "200", "-l", "5000", "-r", "3", "-d", "-f", "a@mail.test", "-t", "b@rcpt.test", addr)
	m := b.messages()
	if len(m) != 200 {
		t.Fatalf("%d messages, want 200", len(m))
	}
	for _, msg := range m {
		if len(msg.rcpts) != 3 || len(msg.body) < 5000 {
			t.Fatalf("message: %d rcpts, %d bytes", len(msg.rcpts), len(msg.body))
		}
	}
}
