package e2e

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// Accounting header_* columns (issue 6 point 5, DOMAIN.md §2) use
// 127.20.65.x: .1 injects, .50 sends reports, .10 is the sink, .99 an MX
// that refuses connections, .101 the daemon.

// TestAcctHeaderFields: with [acct] header-fields = ["Subject",
// "X-Campaign"], the r, d and t records of an injected message carry its
// Subject and (folded) X-Campaign in header_Subject and header_X-Campaign
// right after vmtaPool; an ARF complaint returning the delivered message
// (recipient redacted) writes an f record, and a DSN returning its header
// an rb record, with the same values.
func TestAcctHeaderFields(t *testing.T) {
	t.Parallel()
	env := newFBLEnv(t, "127.20.65", 10)
	mxTo(env.dns, "down.test", "127.20.65.99") // nothing listens: t records
	cfg := testenv.Config{
		Listen:      listenAddr(t, "127.20.65.101"),
		DNS:         []string{env.dns.Addr()},
		AcctRecords: []string{"d", "b", "t", "r", "f", "rb"},
		AcctHeaders: []string{"Subject", "X-Campaign"},
		Sources:     []testenv.Source{{CIDR: "127.20.65.1/32", Relay: true, ProcessXJob: true}},
		Domains:     map[string]testenv.Domain{"*": {RetryAfter: []string{"1s"}}},
		Extra:       fblTOML("") + fmt.Sprintf("\n[bounce]\naddresses = [%q]\n", bounceAddr),
	}
	n := &fblNode{Daemon: testenv.StartDaemon(t, cfg.TOML()), net: env.net}

	const (
		rcpt     = "olga.reader@rcpt.test"
		down     = "pat.later@down.test"
		subject  = `Spring sale, "50%" off`
		campaign = "spring-2026, wave-2"
	)
	msg := "From: Sender <sender@testenv.sluice>\r\nTo: <" + rcpt + ">\r\nSubject: " + subject + "\r\n" +
		"X-Campaign: spring-2026,\r\n wave-2\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: " + testenv.NewMessageID(1) + "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" +
		"Subject: not a header\r\nhello\r\n"
	in := testenv.NewInjector(n.Addr())
	in.LocalIP = "127.20.65.1"
	defer in.Close()
	if err := in.Send("sender@testenv.sluice", []string{rcpt, down}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	check := func(r testenv.Record) {
		t.Helper()
		if r["header_Subject"] != subject || r["header_X-Campaign"] != campaign {
			t.Errorf("%s record: header_Subject %q, header_X-Campaign %q; want %q, %q", r.Type(), r["header_Subject"], r["header_X-Campaign"], subject, campaign)
		}
	}
	for _, typ := range []string{"r", "d"} {
		check(acctOf(t, n, typ, rcpt, 1)[0])
	}
	check(n.WaitAcct(t, testenv.All(testenv.OfType("t"), testenv.ForRcpt(down)), 1, 10*time.Second)[0])

	// The column order: header_* right after vmtaPool.
	head := strings.Join(headerRow(t, n.LogDir), ",")
	if !strings.Contains(head, ",vmtaPool,header_Subject,header_X-Campaign,repSourceIp,") {
		t.Errorf("header row %s", head)
	}

	orig := redact(env.delivered(t, rcpt).Data, rcpt)
	if rep := n.sendReport(t, "", fblAddr, arfReport("abuse", orig, false, "")); rep.Code != 250 {
		t.Fatalf("ARF report: %s", rep)
	}
	check(acctOf(t, n, "f", rcpt, 1)[0])
	dsn := dsnReport(rcpt, "5.2.1", "550 5.2.1 mailbox disabled", orig)
	if rep := n.sendReport(t, "", bounceAddr, dsn); rep.Code != 250 {
		t.Fatalf("DSN: %s", rep)
	}
	check(acctOf(t, n, "rb", rcpt, 1)[0])
}

// headerRow returns the column names of the newest acct file in dir.
func headerRow(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "acct-*.csv"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no acct file in %s: %v", dir, err)
	}
	sort.Strings(files)
	f, err := os.Open(files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row, err := csv.NewReader(f).Read()
	if err != nil {
		t.Fatal(err)
	}
	return row
}
