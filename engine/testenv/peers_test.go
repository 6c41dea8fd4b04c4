package testenv

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

func TestPostfixSink(t *testing.T) {
	t.Parallel()
	p := StartSMTPSink(t, "127.20.250.40:25")
	var ids []string
	for i := range 3 {
		msg := GenMessage(i, 500, "x@d.test")
		ids = append(ids, MessageID(msg))
		if err := Inject(t, p.Addr, "a@b.test", []string{"x@d.test"}, msg); err != nil {
			t.Fatalf("inject %d: %v", i, err)
		}
	}
	p.WaitCount(t, 3, 5*time.Second)
	got := p.MessageIDs()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("smtp-sink has %s %d times", id, got[id])
		}
	}
}

func TestPostfixSinkBehindProxyPipelines(t *testing.T) {
	t.Parallel()
	p := StartSMTPSink(t, "127.20.250.41:25")
	proxy := StartProxy(t, "127.20.250.42:25", p.Addr)
	// swaks pipelines when the server offers PIPELINING and --pipeline is given.
	swaks := RequireTool(t, "swaks", "/usr/bin/swaks")
	out, err := RunClient(swaks, "--server", proxy.Addr, "--from", "a@b.test", "--to", "x@d.test", "--pipeline", "--silent", "2")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	p.WaitCount(t, 1, 5*time.Second)
	if proxy.PipelinedTransactions() != 1 {
		t.Errorf("pipelined %d of %d", proxy.PipelinedTransactions(), proxy.Transactions())
	}
}

func TestStartRedis(t *testing.T) {
	t.Parallel()
	addr := StartRedis(t)
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("PING\r\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "+PONG" {
		t.Errorf("PING: %q %v", line, err)
	}
}
