package throttle

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisBin finds a Redis tool: without it the test is skipped, or fails in CI.
func redisBin(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "" {
		tb.Skipf("%s not installed (apt-get install redis-server)", name)
	}
	tb.Fatalf("%s not installed: %v", name, err)
	return ""
}

// freePort returns a port free on 127.0.0.1 a moment ago; with bus set, one
// whose Cluster bus port (port+10000) is free as well.
func freePort(tb testing.TB, bus bool) int {
	tb.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("free port: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return p
		}
		if p+10000 <= 65535 {
			if l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000)); err == nil {
				l2.Close()
				l.Close()
				return p
			}
		}
		l.Close()
	}
	tb.Fatalf("no free port pair for a cluster node")
	return 0
}

// redisProc is one redis-server child process, killed when the test ends.
type redisProc struct {
	tb   testing.TB
	bin  string
	port int
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// startRedis runs a redis-server without persistence on a free port.
func startRedis(tb testing.TB) *redisProc { return startRedisWith(tb, nil) }

// startRedisWith adds the arguments extra returns for the chosen port; a
// server with extra arguments is a Cluster node and gets a free bus port.
func startRedisWith(tb testing.TB, extra func(port int) []string) *redisProc {
	tb.Helper()
	p := &redisProc{tb: tb, bin: redisBin(tb, "redis-server"), port: freePort(tb, extra != nil)}
	p.args = []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(p.port),
		"--save", "", "--appendonly", "no", "--dir", tb.TempDir()}
	if extra != nil {
		p.args = append(p.args, extra(p.port)...)
	}
	p.start()
	tb.Cleanup(p.kill)
	return p
}

func (p *redisProc) start() {
	p.tb.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	if err := p.cmd.Start(); err != nil {
		p.tb.Fatalf("start redis-server: %v", err)
	}
	p.done = make(chan struct{})
	cmd, done := p.cmd, p.done
	go func() { // owned by p: ends when the process does (kill)
		cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr(), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			p.tb.Fatalf("redis-server on %s exited at start", p.addr())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("redis-server on %s not listening: %v", p.addr(), err)
		}
	}
}

// kill stops the server at once (SIGKILL), as a crash would.
func (p *redisProc) kill() {
	if p.cmd != nil {
		p.cmd.Process.Kill()
		<-p.done
		p.cmd = nil
	}
}

// restart starts the server again on the same port.
func (p *redisProc) restart() {
	p.tb.Helper()
	p.kill()
	p.start()
}

// newClient makes a client for tests: a killed or absent server is noticed
// at once (reset or refused), and the timeouts only guard against a hang;
// one dial attempt, not go-redis's five.
func newClient(tb testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: 1, DialerRetries: 1})
	tb.Cleanup(func() { c.Close() })
	return c
}

// startCluster runs three redis-server masters and joins them with
// redis-cli --cluster create; it returns their addresses once
// cluster_state is ok on each.
func startCluster(tb testing.TB) []string {
	tb.Helper()
	cli := redisBin(tb, "redis-cli")
	dir := tb.TempDir()
	var addrs []string
	for range 3 {
		p := startRedisWith(tb, func(port int) []string {
			return []string{"--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
				"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port))}
		})
		addrs = append(addrs, p.addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				tb.Fatalf("cluster node %s not ok: %v %s", a, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return addrs
}

func newClusterClient(tb testing.TB, addrs []string) *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, DialerRetries: 1})
	tb.Cleanup(func() { c.Close() })
	return c
}
