package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestAdminDeleteJob: `sluice delete --job` bounces the job's queued mail
// with b records of category admin, removes it from the spool and leaves
// other jobs queued; `sluice show jobs` counts it.
func TestAdminDeleteJob(t *testing.T) {
	dns := startDNS(t)
	testenv.StartSink(t, "127.20.82.1:25", testenv.SinkOptions{
		RcptReply: func(rcpt string, attempt int) (int, string, string) { return 451, "4.2.1", "come back later" },
	})
	mxTo(dns, "d3.test", "127.20.82.1")
	d := startAdminDaemon(t, "127.20.82.253", testenv.Config{
		Listen:  listenAddr(t, "127.20.82.254"),
		DNS:     []string{dns.Addr()},
		Sources: []testenv.Source{{CIDR: "127.0.0.0/8", Relay: true, ProcessXJob: true}},
		Domains: map[string]testenv.Domain{"*": {RetryAfter: []string{"1h"}}},
	})
	for i := range 3 {
		rcpt := fmt.Sprintf("a%d@d3.test", i)
		if err := testenv.Inject(t, d.Addr(), "s@sender.test", []string{rcpt}, adminJobMessage(i, "job1", rcpt)); err != nil {
			t.Fatal(err)
		}
	}
	if err := testenv.Inject(t, d.Addr(), "s@sender.test", []string{"b@d3.test"}, adminJobMessage(9, "job2", "b@d3.test")); err != nil {
		t.Fatal(err)
	}
	d.WaitAcct(t, testenv.OfType("t"), 4, 15*time.Second)

	out := adminMustCLI(t, "delete", "--job", "job1", "--config", d.ConfigPath)
	if !strings.Contains(out, "3 recipient(s) of job job1 bounced") {
		t.Errorf("delete said %q", out)
	}
	bounces := d.WaitAcct(t, testenv.OfType("b"), 3, 10*time.Second)
	for _, r := range bounces {
		if r["bounceCat"] != "admin" || r["jobId"] != "job1" || !strings.HasPrefix(r["rcpt"], "a") {
			t.Errorf("b record %v", r)
		}
	}
	q := d.apiQueues(t)["d3.test/default"]
	if q == nil || q["queued"] != float64(1) {
		t.Errorf("d3.test/default after deleting job1: %v", q)
	}
	out = adminMustCLI(t, "show", "jobs", "--config", d.ConfigPath)
	var job1 []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "job1" {
			job1 = f
		}
	}
	// JOB RECEIVED DELIVERED DEFERRED BOUNCED COMPLAINED HELD
	if job1 == nil || job1[1] != "3" || job1[3] != "3" || job1[4] != "3" {
		t.Errorf("show jobs:\n%s", out)
	}
	// Deleting by queue takes the rest.
	out = adminMustCLI(t, "delete", "--queue", "d3.test/*", "--config", d.ConfigPath)
	if !strings.Contains(out, "1 recipient(s) of queue d3.test/* bounced") {
		t.Errorf("delete --queue said %q", out)
	}
	d.WaitAcct(t, testenv.OfType("b"), 4, 10*time.Second)
	adminWaitFor(t, "an empty spool", 10*time.Second, func() bool {
		var st struct{ Spool struct{ Recipients int } }
		d.call(t, "GET", "/api/v1/status", adminToken, "", &st)
		return st.Spool.Recipients == 0
	})
	if _, code := adminCLI(t, "delete", "--job", "x", "--queue", "y", "--config", d.ConfigPath); code != 2 {
		t.Errorf("delete with both --job and --queue: exit %d, want 2", code)
	}
}
