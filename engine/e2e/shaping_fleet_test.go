package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestFleetSharesPoolState: with two daemons on one Redis, a source IP
// disabled for a site by one node is skipped by the other too, and a VMTA's
// warm-up cap is one count for the whole fleet (issue 4, points 4 and 5).
func TestFleetSharesPoolState(t *testing.T) {
	t.Parallel()
	const blocked = "127.0.0.2" // v1
	redisAddr := testenv.StartRedis(t)
	dns := startDNS(t)
	blk := startIPSink(t, "127.20.45.1:25", func(ip string) error {
		if ip == blocked {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
				Message: "Client host [" + blocked + "] blocked using Spamhaus. (S3150)"}
		}
		return nil
	})
	mxTo(dns, "blk.test", "127.20.45.1")
	warm := testenv.StartSink(t, "127.20.45.2:25", testenv.SinkOptions{Hostname: "mx.warm.test"})
	mxTo(dns, "warm.test", "127.20.45.2")

	day := time.Now().UTC().Format(time.DateOnly)
	extra := vmtaTOML("v1") + vmtaTOML("v2") +
		vmtaTOML("v3", fmt.Sprintf("warmup-start = %q", day), "warmup-daily = [10]") + vmtaTOML("v4") +
		poolTOML("pool-a", "v1:1", "v2:1") + poolTOML("pool-w", "v3:1", "v4:1") +
		"[[smtp-pattern-list.default]]\nreply = '/S3150/'\naction = \"disable-source-ip\"\nreenable-after = \"1m\"\n\n" +
		"[domain.\"*\"]\nsmtp-pattern-list = \"default\"\nmax-smtp-out = 1\nretry-after = [\"20s\"]\n\n" +
		redisTOML("redis://"+redisAddr+"/0", 2)
	var nodes [2]*testenv.Daemon
	for i := range nodes {
		nodes[i] = testenv.StartDaemon(t, testenv.Config{
			Listen:  listenAddr(t, fmt.Sprintf("127.20.45.%d", 101+i)),
			DNS:     []string{dns.Addr()},
			Sources: []testenv.Source{{CIDR: "127.0.0.0/8", Relay: true, ProcessXVirtualMTA: true, DefaultVirtualMTA: "pool-a"}},
			Extra:   extra,
		}.TOML())
	}
	rejections := func() int {
		n := 0
		for _, e := range blk.Rcpts() {
			if e.Rejected {
				n++
			}
		}
		return n
	}

	// Node 0 meets S3150 on v1 and disables it for blk.test.
	for i := 0; i < 4; i++ {
		sendOne(t, nodes[0].Addr(), fmt.Sprintf("a%d@blk.test", i))
	}
	blk.WaitCount(t, 4, 15*time.Second)
	before := rejections()
	if before == 0 {
		t.Fatalf("node 0 never tried v1 for blk.test; RCPTs: %v", blk.Rcpts())
	}
	time.Sleep(time.Second) // the pub/sub delay the issue allows
	// Node 1 never tries v1 for blk.test.
	for i := 0; i < 8; i++ {
		sendOne(t, nodes[1].Addr(), fmt.Sprintf("b%d@blk.test", i))
	}
	blk.WaitCount(t, 12, 15*time.Second)
	if n := rejections(); n != before {
		t.Errorf("node 1 met %d S3150 rejections on v1 after node 0 disabled it", n-before)
	}

	// Warm-up: 30 messages through each node over pool-w; v3 sends 10 in all.
	for n, d := range nodes {
		for i := 0; i < 30; i++ {
			rcpt := fmt.Sprintf("n%d-%d@warm.test", n, i)
			msg := withHeader("X-Virtual-MTA: pool-w", testenv.GenMessage(i, 300, rcpt))
			if err := testenv.Inject(t, d.Addr(), "sender@e2e.test", []string{rcpt}, msg); err != nil {
				t.Fatalf("inject %s: %v", rcpt, err)
			}
		}
	}
	warm.WaitCount(t, 60, 30*time.Second)
	fromV3 := 0
	for _, m := range warm.Messages() {
		if m.RemoteIP == "127.0.0.4" {
			fromV3++
		}
	}
	if fromV3 != 10 {
		t.Errorf("v3 sent %d messages through two nodes, want its fleet-wide cap of 10", fromV3)
	}
}
