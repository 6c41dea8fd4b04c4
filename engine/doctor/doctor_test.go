package doctor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/dkim"
	"github.com/sluice-mta/sluice/engine/dkim/dkimtest"
	"github.com/sluice-mta/sluice/engine/dns"
	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/doctor"
)

// resolver returns an engine/dns resolver asking a real in-process DNS
// server, and the server to fill.
func resolver(t *testing.T) (*dns.Resolver, *dnstest.Server) {
	t.Helper()
	srv := dnstest.Start(t)
	r, err := dns.New(dns.Config{Servers: []string{srv.Addr()}, Timeout: 2 * time.Second}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return r, srv
}

func record(t *testing.T, name string) string {
	rec, err := dkim.PublicRecord(dkimtest.Key(t, name).Public())
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func find(rs []doctor.Result, check, subject string) doctor.Result {
	for _, r := range rs {
		if r.Check == check && strings.HasPrefix(r.Subject, subject) {
			return r
		}
	}
	return doctor.Result{Status: "missing"}
}

// TestGoodSetup: PTR/FCrDNS, SPF through include, a and mx, both DKIM keys
// and DMARC all pass.
func TestGoodSetup(t *testing.T) {
	r, srv := resolver(t)
	srv.SetPTR("127.46.0.2", "v1.good.test")
	srv.SetA("v1.good.test", "127.46.0.2")
	srv.SetPTR("127.46.1.3", "v2.good.test")
	srv.SetA("v2.good.test", "127.46.1.3")
	srv.SetTXT("good.test", "v=spf1 mx a:out.good.test include:_spf.good.test -all", "google-site-verification=x")
	srv.SetMX("good.test", dnstest.MX{Pref: 10, Host: "mx.good.test"})
	srv.SetA("mx.good.test", "127.46.9.9")
	srv.SetA("out.good.test", "127.46.1.3")
	srv.SetTXT("_spf.good.test", "v=spf1 ip4:127.46.0.0/24 ~all")
	srv.SetTXT("s2048._domainkey.good.test", record(t, "rsa2048.pem"))
	srv.SetTXT("ed._domainkey.good.test", record(t, "ed25519.pem"))
	srv.SetTXT("_dmarc.good.test", "v=DMARC1; p=reject; rua=mailto:d@good.test")
	// news.good.test has no key and no record of its own: signed as
	// good.test (relaxed alignment), DMARC from the organizational domain.
	srv.SetTXT("news.good.test", "v=spf1 redirect=good.test")

	rs := doctor.Run(context.Background(), r, doctor.Input{
		VMTAs: []doctor.VMTA{
			{Name: "v1", IP: netip.MustParseAddr("127.46.0.2"), Helo: "v1.good.test"},
			{Name: "v2", IP: netip.MustParseAddr("127.46.1.3"), Helo: "v2.good.test"},
		},
		Keys: []doctor.Key{
			{Domain: "good.test", Selector: "s2048", Signer: dkimtest.Key(t, "rsa2048.pem")},
			{Domain: "good.test", Selector: "ed", Signer: dkimtest.Key(t, "ed25519.pem")},
		},
		DefaultDomain: "good.test",
		Domains:       []string{"news.good.test"},
	})
	var table bytes.Buffer
	doctor.WriteTable(&table, rs)
	t.Logf("\n%s", table.String())
	if len(rs) != 2+2+2+1+2+1 {
		t.Errorf("%d results", len(rs))
	}
	for _, res := range rs {
		if res.Status != doctor.Pass {
			t.Errorf("%s %s: %s %s (fix: %s)", res.Check, res.Subject, res.Status, res.Detail, res.Fix)
		}
	}
	if d := find(rs, "SPF", "good.test via v2").Detail; !strings.Contains(d, "a:out.good.test") {
		t.Errorf("SPF of v2 decided by %q, want a:out.good.test", d)
	}
	if d := find(rs, "DMARC", "news.good.test").Detail; !strings.Contains(d, "_dmarc.good.test") || !strings.Contains(d, "d=good.test") {
		t.Errorf("DMARC of news.good.test: %s", d)
	}
	if doctor.Worst(rs) != doctor.Pass {
		t.Error("Worst is not pass")
	}
}

// TestBadSetup: a wrong PTR, a name that does not resolve back, an SPF
// record lacking the IP, a DKIM key mismatch and a missing DMARC record
// each fail with a fix.
func TestBadSetup(t *testing.T) {
	r, srv := resolver(t)
	srv.SetPTR("127.46.2.4", "wrong.bad.test")
	srv.SetA("v3.bad.test", "127.46.2.4")
	srv.SetPTR("127.46.2.5", "v4.bad.test")
	srv.SetA("v4.bad.test", "127.46.7.7")
	srv.SetTXT("bad.test", "v=spf1 ip4:127.46.0.0/24 -all")
	srv.SetTXT("s1._domainkey.bad.test", record(t, "rsa2048-other.pem"))

	rs := doctor.Run(context.Background(), r, doctor.Input{
		VMTAs: []doctor.VMTA{
			{Name: "v3", IP: netip.MustParseAddr("127.46.2.4"), Helo: "v3.bad.test"},
			{Name: "v4", IP: netip.MustParseAddr("127.46.2.5"), Helo: "v4.bad.test"},
		},
		Keys: []doctor.Key{{Domain: "bad.test", Selector: "s1", Signer: dkimtest.Key(t, "rsa2048.pem")}},
	})
	var table bytes.Buffer
	doctor.WriteTable(&table, rs)
	t.Logf("\n%s", table.String())
	for _, tc := range []struct{ check, subject, detail, fix string }{
		{"PTR", "v3", "PTR is wrong.bad.test, HELO name is v3.bad.test", "set the PTR of 127.46.2.4 to v3.bad.test"},
		{"PTR", "v4", "resolves to 127.46.7.7, not 127.46.2.5", "add the A record v4.bad.test → 127.46.2.5"},
		{"SPF", "bad.test via v3", "127.46.2.4 is not authorized: -all in bad.test gives fail", "add ip4:127.46.2.4 to the SPF record of bad.test"},
		{"DKIM", "s1._domainkey.bad.test", "published key differs from the key-file", `publish TXT at s1._domainkey.bad.test: "v=DKIM1; k=rsa; p=`},
		{"DMARC", "bad.test", "no DMARC record at _dmarc.bad.test", "publish TXT at _dmarc.bad.test"},
	} {
		res := find(rs, tc.check, tc.subject)
		if res.Status != doctor.Fail || !strings.Contains(res.Detail, tc.detail) || !strings.Contains(res.Fix, tc.fix) {
			t.Errorf("%s %s: %s %q fix %q; want fail %q fix %q", tc.check, tc.subject, res.Status, res.Detail, res.Fix, tc.detail, tc.fix)
		}
	}
	var js bytes.Buffer
	if err := doctor.WriteJSON(&js, rs); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Status  string          `json:"status"`
		Results []doctor.Result `json:"results"`
	}
	if err := json.Unmarshal(js.Bytes(), &out); err != nil || out.Status != "fail" || len(out.Results) != len(rs) {
		t.Errorf("JSON: %v %+v", err, out)
	}
}

// TestDMARCAlignment: mail of a domain without a key of its own, signed
// with another organization's default key and without SPF, cannot align.
func TestDMARCAlignment(t *testing.T) {
	r, srv := resolver(t)
	srv.SetTXT("s._domainkey.esp.test", record(t, "ed25519.pem"))
	srv.SetTXT("_dmarc.esp.test", "v=DMARC1; p=none")
	srv.SetTXT("client.test", "v=spf1 -all")
	srv.SetTXT("_dmarc.client.test", "v=DMARC1; p=reject; adkim=s")
	rs := doctor.Run(context.Background(), r, doctor.Input{
		VMTAs:         []doctor.VMTA{{Name: "v", IP: netip.MustParseAddr("127.46.6.2"), Helo: "v.esp.test"}},
		Keys:          []doctor.Key{{Domain: "esp.test", Selector: "s", Signer: dkimtest.Key(t, "ed25519.pem")}},
		DefaultDomain: "esp.test",
		Domains:       []string{"client.test"},
	})
	res := find(rs, "DMARC", "client.test")
	if res.Status != doctor.Fail || !strings.Contains(res.Detail, "neither DKIM nor SPF can align") || !strings.Contains(res.Fix, "add a [[dkim-key]] for it") {
		t.Errorf("client.test: %+v", res)
	}
	if res := find(rs, "DMARC", "esp.test"); res.Status != doctor.Pass {
		t.Errorf("esp.test: %+v", res)
	}
}
