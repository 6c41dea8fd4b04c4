// BenchmarkRelay measures Sluice with Postfix's own tools: smtp-source
// injects, smtp-sink receives, and the figures are compared with
// smtp-source sending straight to smtp-sink in the same run. Run it with
// `make bench` (go test -bench . -benchtime 1x ./bench/). It is the figure
// quoted for issue 2; `go run ./bench` has the scenarios of issue 3.

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// Addresses of this package: 127.30.0.0/16.
const (
	sinkAddr   = "127.30.0.1:25"
	listenAddr = "127.30.0.2:2525"
)

// messages is how many messages one run sends (SLUICE_BENCH_MESSAGES).
func messages() int {
	if n, err := strconv.Atoi(os.Getenv("SLUICE_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 20000
}

// startSink runs a plain smtp-sink (no dumping: as fast as it goes).
func startSink(b *testing.B, addr string) {
	b.Helper()
	bin := testenv.RequireTool(b, "smtp-sink", "/usr/sbin/smtp-sink")
	cmd := exec.Command(bin, "-u", "root", addr, "1024")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testenv.WaitListening(b, addr, 5*time.Second)
}

// source runs smtp-source with 16 sessions of 5 KB messages, one message
// per connection as Postfix's tool does by default, and returns its time.
func source(b *testing.B, addr string, n int) time.Duration {
	b.Helper()
	bin := testenv.RequireTool(b, "smtp-source", "/usr/sbin/smtp-source")
	cmd := exec.Command(bin, "-s", "16", "-l", "5120", "-m", strconv.Itoa(n),
		"-f", "bench@sender.test", "-t", "rcpt@bench.test", addr)
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("smtp-source: %v\n%s", err, out)
	}
	return time.Since(t0)
}

// BenchmarkRelay reports, from one run:
//   - direct_msgs/s: smtp-source → smtp-sink, the SMTP ceiling of this machine;
//   - inject_msgs/s: smtp-source → sluice, every 250 after an fsync;
//   - e2e_msgs/s: from the first injection to the last `d` record, with
//     sluice relaying to smtp-sink over reused, pipelined connections;
//   - e2e/direct: the ratio the issues set targets for.
func BenchmarkRelay(b *testing.B) {
	n := messages()
	startSink(b, sinkAddr)
	cfg := testenv.Config{
		Listen:          listenAddr,
		MaxSessions:     64,
		LogLevel:        "warn",
		AcctRecords:     []string{"d", "b", "t"},
		ShutdownTimeout: "10s",
		Domains: map[string]testenv.Domain{"*": {
			MaxSMTPOut: 20, MaxMsgPerConnection: 1000, RetryAfter: []string{"5s"}, Route: sinkAddr,
		}},
	}
	d := testenv.StartDaemon(b, cfg.TOML(), testenv.WithEnv("GOMAXPROCS=2"))

	b.ResetTimer()
	for range b.N {
		direct := source(b, sinkAddr, n)

		t0 := time.Now()
		before := countDelivered(d.LogDir)
		inject := source(b, listenAddr, n)
		waitDelivered(b, d.LogDir, before+n, 10*time.Minute)
		e2e := time.Since(t0)

		rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
		b.ReportMetric(rate(direct), "direct_msgs/s")
		b.ReportMetric(rate(inject), "inject_msgs/s")
		b.ReportMetric(rate(e2e), "e2e_msgs/s")
		b.ReportMetric(rate(e2e)/rate(direct), "e2e/direct")
		fmt.Fprintf(os.Stderr, "bench: %d msgs of 5 KB: direct %.0f/s, inject %.0f/s, end-to-end %.0f/s, ratio %.2f\n",
			n, rate(direct), rate(inject), rate(e2e), rate(e2e)/rate(direct))
	}
}

// countDelivered counts `d` rows in the acct files cheaply (no CSV parse),
// so that polling does not steal CPU from the daemon being measured.
func countDelivered(dir string) int {
	files, _ := filepath.Glob(filepath.Join(dir, "acct-*.csv"))
	n := 0
	for _, f := range files {
		data, _ := os.ReadFile(f)
		n += bytes.Count(data, []byte("\nd,"))
	}
	return n
}

func waitDelivered(b *testing.B, dir string, n int, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for countDelivered(dir) < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d delivered after %v", countDelivered(dir), n, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
