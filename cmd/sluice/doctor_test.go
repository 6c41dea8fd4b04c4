package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/engine/dkim"
	"github.com/sluice-mta/sluice/engine/dkim/dkimtest"
	"github.com/sluice-mta/sluice/engine/dns/dnstest"
)

// TestDoctorCommand runs `sluice doctor` on a config whose VMTA, key and
// [dns] server are real: a correct setup exits 0, a broken PTR exits 1.
func TestDoctorCommand(t *testing.T) {
	srv := dnstest.Start(t)
	dir := t.TempDir()
	key := dkimtest.KeyFile(t, dir, "ed25519.pem")
	rec, err := dkim.PublicRecord(dkimtest.Key(t, "ed25519.pem").Public())
	if err != nil {
		t.Fatal(err)
	}
	srv.SetPTR("127.46.5.2", "v1.doc.test")
	srv.SetA("v1.doc.test", "127.46.5.2")
	srv.SetTXT("doc.test", "v=spf1 ip4:127.46.5.2 -all")
	srv.SetTXT("ed._domainkey.doc.test", rec)
	srv.SetTXT("_dmarc.doc.test", "v=DMARC1; p=none")
	cfg := filepath.Join(dir, "sluice.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`hostname = "mta.doc.test"
[[listener]]
address = "127.46.5.1:2525"
[dns]
servers = [%q]
[[virtual-mta]]
name = "v1"
smtp-source-host = "127.46.5.2 v1.doc.test"
[[dkim-key]]
domain = "doc.test"
selector = "ed"
key-file = %q
`, srv.Addr(), key)), 0o600)

	var out, errb bytes.Buffer
	if code := run([]string{"doctor", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errb.String(), out.String())
	}
	if !strings.Contains(out.String(), "4 pass, 0 warn, 0 fail") {
		t.Errorf("table:\n%s", out.String())
	}

	srv.SetPTR("127.46.5.2", "elsewhere.test")
	out.Reset()
	if code := run([]string{"doctor", "--config", cfg, "--json"}, &out, &errb); code != 1 {
		t.Fatalf("wrong PTR: exit %d, want 1: %s", code, errb.String())
	}
	var rep struct {
		Status  string
		Results []struct{ Check, Status string }
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Status != "fail" || rep.Results[0].Check != "PTR" || rep.Results[0].Status != "fail" {
		t.Errorf("JSON %v: %s", err, out.String())
	}
}
