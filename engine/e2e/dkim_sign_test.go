package e2e

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/dkim/dkimtest"
	"github.com/sluice-mta/sluice/engine/testenv"
)

// dkimKeys writes the RSA-2048 and Ed25519 test keys for testenv.sluice
// (GenMessage's From domain) and returns the [[dkim-key]] tables and the
// records a verifier needs.
func dkimKeys(t *testing.T) (string, dkimtest.Records) {
	t.Helper()
	dir := t.TempDir()
	recs := dkimtest.Records{}
	var b strings.Builder
	for _, k := range []struct{ sel, file string }{{"s2048", "rsa2048.pem"}, {"ed", "ed25519.pem"}} {
		path := dkimtest.KeyFile(t, dir, k.file)
		recs.Add(t, "testenv.sluice", k.sel, dkimtest.Key(t, k.file))
		fmt.Fprintf(&b, "[[dkim-key]]\ndomain = \"testenv.sluice\"\nselector = %q\nkey-file = %q\n\n", k.sel, path)
	}
	return b.String(), recs
}

// dkimSigs returns the DKIM-Signature fields of a message, as received.
func dkimSigs(data []byte) []string {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	var sigs []string
	for _, f := range strings.Split("\r\n"+string(head), "\r\nDKIM-Signature:")[1:] {
		// the field ends at the next line that is not a continuation
		end := len(f)
		for i := 0; i+2 < len(f); i++ {
			if f[i] == '\r' && f[i+1] == '\n' && f[i+2] != ' ' && f[i+2] != '\t' {
				end = i
				break
			}
		}
		sigs = append(sigs, f[:end])
	}
	return sigs
}

// TestDKIMSignedDelivery: 50 messages from a domain with an RSA-2048 and
// an Ed25519 key arrive at the sink with two signatures each, and both
// verify with dkimpy and with go-msgauth.
func TestDKIMSignedDelivery(t *testing.T) {
	t.Parallel()
	dkimtest.Python(t) // skip early (or fail in CI) without dkimpy
	keys, recs := dkimKeys(t)
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.70.1:25", testenv.SinkOptions{})
	mxTo(dns, "dk.test", "127.20.70.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.70.254"),
		DNS:    []string{dns.Addr()},
		Extra:  keys,
	}.TOML())

	const n = 50
	injectAll(t, d.Addr(), n, 4, 2000, func(i int) string { return fmt.Sprintf("r%d@dk.test", i) })
	sink.WaitCount(t, n, 30*time.Second)

	msgs := sink.Messages()
	var data [][]byte
	for _, m := range msgs {
		data = append(data, m.Data)
		if got := len(dkimSigs(m.Data)); got != 2 {
			t.Fatalf("%s carries %d DKIM-Signature fields, want 2:\n%s", m.MessageID, got, m.Data)
		}
		res, err := dkimtest.VerifyGo(m.Data, recs)
		if err != nil || len(res) != 2 || !res[0].OK || !res[1].OK {
			t.Fatalf("go-msgauth on %s: %+v %v", m.MessageID, res, err)
		}
	}
	py, err := dkimtest.VerifyPython(t, data, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range py {
		var sels []string
		for _, r := range res {
			if !r.OK || r.Domain != "testenv.sluice" {
				t.Errorf("dkimpy on %s: %+v", msgs[i].MessageID, r)
			}
			sels = append(sels, r.Selector)
		}
		slices.Sort(sels)
		if !slices.Equal(sels, []string{"ed", "s2048"}) {
			t.Errorf("dkimpy on %s: selectors %v, want ed and s2048", msgs[i].MessageID, sels)
		}
	}
	t.Logf("%d messages, %d signatures verified by dkimpy and go-msgauth", len(msgs), 2*len(msgs))
}

// TestDKIMSignOnce: the sink answers the first DATA with 451; the retry
// carries byte-for-byte the signatures of the first attempt, and they
// verify.
func TestDKIMSignOnce(t *testing.T) {
	t.Parallel()
	keys, recs := dkimKeys(t)
	dns := startDNS(t)
	var mu sync.Mutex
	first := map[string][]string{} // Message-ID → signatures of attempt 1
	sink := testenv.StartSink(t, "127.20.71.1:25", testenv.SinkOptions{
		DataReply: func(m *testenv.Message, attempt int) (int, string, string) {
			if attempt == 1 {
				mu.Lock()
				first[m.MessageID] = dkimSigs(m.Data)
				mu.Unlock()
				return 451, "4.3.0", "try again later"
			}
			return 0, "", ""
		},
	})
	mxTo(dns, "once.test", "127.20.71.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.71.254"),
		DNS:     []string{dns.Addr()},
		Domains: map[string]testenv.Domain{"*": {RetryAfter: []string{"1s"}, BounceAfter: "1m"}},
		Extra:   keys,
	}.TOML())

	const n = 3
	injectAll(t, d.Addr(), n, 1, 500, func(i int) string { return fmt.Sprintf("r%d@once.test", i) })
	sink.WaitCount(t, n, 30*time.Second)
	for _, m := range sink.Messages() {
		mu.Lock()
		was := first[m.MessageID]
		mu.Unlock()
		now := dkimSigs(m.Data)
		if len(was) != 2 || !slices.Equal(was, now) {
			t.Errorf("%s: signatures changed between attempts:\nfirst: %q\nretry: %q", m.MessageID, was, now)
		}
		res, err := dkimtest.VerifyGo(m.Data, recs)
		if err != nil || len(res) != 2 || !res[0].OK || !res[1].OK {
			t.Errorf("go-msgauth on the retried %s: %+v %v", m.MessageID, res, err)
		}
	}
	if recs := testenv.Filter(d.Acct(), testenv.OfType("t")); len(recs) < n {
		t.Errorf("%d t records, want at least %d (one deferral per message)", len(recs), n)
	}
}

// TestDKIMBadKeyStopsStart: a missing key file is a configuration error
// that names the key and its line.
func TestDKIMBadKeyStopsStart(t *testing.T) {
	t.Parallel()
	cfg := testenv.Config{Listen: "127.20.72.254:2525"}.TOML() +
		"\n[[dkim-key]]\ndomain = \"testenv.sluice\"\nselector = \"s\"\nkey-file = \"/nonexistent/k.pem\"\n"
	out, err := testenv.CheckConfig(t, cfg)
	if err == nil || !strings.Contains(out, "dkim-key[0].key-file: /nonexistent/k.pem: no such file or directory (line") {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
}

// TestDKIMSignedDSN: with [dkim] default-domain, the failure report the
// daemon writes for a refused recipient (From: MAILER-DAEMON@hostname) is
// signed too, and both signatures verify with go-msgauth and dkimpy.
func TestDKIMSignedDSN(t *testing.T) {
	t.Parallel()
	dkimtest.Python(t)
	keys, recs := dkimKeys(t)
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.77.1:25", testenv.SinkOptions{
		RcptReply: func(rcpt string, _ int) (int, string, string) {
			if strings.HasSuffix(rcpt, "@hard.test") {
				return 550, "5.1.1", "no such user"
			}
			return 0, "", ""
		},
	})
	mxTo(dns, "hard.test", "127.20.77.1")
	mxTo(dns, "back.test", "127.20.77.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.77.254"),
		DNS:     []string{dns.Addr()},
		Sources: []testenv.Source{{CIDR: "127.0.0.0/8", Relay: true, BounceDSN: true}},
		Extra:   keys + "[dkim]\ndefault-domain = \"testenv.sluice\"\n",
	}.TOML())

	in := testenv.NewInjector(d.Addr())
	defer in.Close()
	if err := in.Send("sender@back.test", []string{"gone@hard.test"}, testenv.GenMessage(1, 1000, "gone@hard.test")); err != nil {
		t.Fatal(err)
	}
	sink.WaitCount(t, 1, 30*time.Second)
	dsn := sink.Messages()[0]
	if !slices.Equal(dsn.Rcpts, []string{"sender@back.test"}) || !bytes.Contains(dsn.Data, []byte("MAILER-DAEMON@")) {
		t.Fatalf("not the failure report: to %v\n%s", dsn.Rcpts, dsn.Data)
	}
	if got := len(dkimSigs(dsn.Data)); got != 2 {
		t.Fatalf("the report carries %d DKIM-Signature fields, want 2:\n%s", got, dsn.Data)
	}
	res, err := dkimtest.VerifyGo(dsn.Data, recs)
	if err != nil || len(res) != 2 || !res[0].OK || !res[1].OK {
		t.Fatalf("go-msgauth on the report: %+v %v", res, err)
	}
	py, err := dkimtest.VerifyPython(t, [][]byte{dsn.Data}, recs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range py[0] {
		if !r.OK || r.Domain != "testenv.sluice" {
			t.Errorf("dkimpy on the report: %+v", r)
		}
	}
}
