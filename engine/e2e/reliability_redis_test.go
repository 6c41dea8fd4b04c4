package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// Addresses: 127.20.101.1 the sink, .254 the daemon, .10–.11 injectors.

// debugRedis is a redis-server that allows DEBUG from loopback, so a test
// can make it sleep; it can be killed and started again on its port.
type debugRedis struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func startDebugRedis(t *testing.T) *debugRedis {
	t.Helper()
	r := &debugRedis{t: t, bin: testenv.RequireTool(t, "redis-server", "/usr/bin/redis-server"),
		dir: t.TempDir(), port: testenv.FreePort(t, "127.0.0.1")}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *debugRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *debugRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--enable-debug-command", "local")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	done := make(chan struct{})
	r.done = done
	cmd := r.cmd
	go func() { cmd.Wait(); close(done) }() // owned by r: kill ends it
	testenv.WaitListening(r.t, r.addr(), 5*time.Second)
}

// kill sends SIGKILL and waits; a no-op when not running.
func (r *debugRedis) kill() {
	if r.cmd == nil {
		return
	}
	select {
	case <-r.done:
	default:
		r.cmd.Process.Kill()
		<-r.done
	}
}

// sleep makes the server block for d (DEBUG SLEEP) and returns at once;
// the connection is closed when the reply arrives.
func (r *debugRedis) sleep(d time.Duration) {
	r.t.Helper()
	c, err := net.Dial("tcp", r.addr())
	if err != nil {
		r.t.Fatalf("redis: %v", err)
	}
	secs := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	fmt.Fprintf(c, "*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$%d\r\n%s\r\n", len(secs), secs)
	go func() { // owned here: ends with the reply, or the deadline
		c.SetReadDeadline(time.Now().Add(d + 10*time.Second))
		bufio.NewReader(c).ReadString('\n')
		c.Close()
	}()
}

// logLineTime returns the time of the first log line after since whose msg
// contains want.
func logLineTime(t *testing.T, path, want string, since time.Time) (time.Time, bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct{ TS, Msg string }
		if json.Unmarshal(sc.Bytes(), &l) != nil || !strings.Contains(l.Msg, want) {
			continue
		}
		if ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", l.TS); err == nil && ts.After(since) {
			return ts, true
		}
	}
	return time.Time{}, false
}

// TestRedisSlowAndRestart: with its limits in Redis, the daemon keeps
// accepting mail at full speed while Redis is slow (DEBUG SLEEP 3) and
// while it is gone (SIGKILL, restarted 2 s later on the same port); every
// message that got a 250 is delivered, and the shared limits are back
// within 5 s of the restart. TestRedisOutage (shaping_cluster_test.go)
// checks the connection limits during and after an outage.
func TestRedisSlowAndRestart(t *testing.T) {
	t.Parallel()
	rds := startDebugRedis(t)
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.101.1:25", testenv.SinkOptions{})
	mxTo(dns, "rf.test", "127.20.101.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:   listenAddr(t, "127.20.101.254"),
		DNS:      []string{dns.Addr()},
		LogLevel: "info",
		Extra: `[domain."*"]
retry-after = ["1s"]

[domain."rf.test"]
max-smtp-out = 4
max-msg-rate = "6000/m"

` + redisTOML("redis://"+rds.addr()+"/0", 1),
	}.TOML())

	type sent struct {
		id        string
		at, taken time.Duration
		err       error
	}
	var (
		mu   sync.Mutex
		all  []sent
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	start := time.Now()
	for c := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := testenv.NewInjector(d.Addr())
			in.LocalIP = fmt.Sprintf("127.20.101.%d", 10+c)
			in.Timeout = 20 * time.Second
			defer in.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				rcpt := fmt.Sprintf("c%d-%d@rf.test", c, i)
				msg := testenv.GenMessage(i, 800, rcpt)
				t0 := time.Now()
				err := in.Send("sender@e2e.test", []string{rcpt}, msg)
				mu.Lock()
				all = append(all, sent{testenv.MessageID(msg), t0.Sub(start), time.Since(t0), err})
				mu.Unlock()
			}
		}()
	}
	const sleepFor = 3 * time.Second
	time.Sleep(2 * time.Second)
	slept := time.Since(start)
	rds.sleep(sleepFor)
	time.Sleep(sleepFor + time.Second)
	rds.kill()
	killed := time.Since(start)
	time.Sleep(2 * time.Second)
	// Taken before start returns: the daemon may reconnect while start
	// still waits for Redis to answer.
	restarted := time.Now()
	rds.start()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	var worstInSleep, worst time.Duration
	var ids []string
	for _, s := range all {
		if s.err != nil {
			t.Errorf("message at %v: %v", s.at.Round(time.Millisecond), s.err)
			continue
		}
		ids = append(ids, s.id)
		worst = max(worst, s.taken)
		if s.at+s.taken > slept && s.at < slept+sleepFor {
			worstInSleep = max(worstInSleep, s.taken)
		}
	}
	t.Logf("%d messages; slowest 250 while Redis slept %v, overall %v; Redis killed at %v",
		len(ids), worstInSleep.Round(time.Millisecond), worst.Round(time.Millisecond), killed.Round(time.Millisecond))
	if worstInSleep > 1500*time.Millisecond {
		t.Errorf("injection stalled %v while Redis slept %v", worstInSleep, sleepFor)
	}

	deadline := time.Now().Add(60 * time.Second)
	for {
		got := sink.MessageIDs()
		missing := 0
		for _, id := range ids {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages not delivered", missing, len(ids))
		}
		time.Sleep(100 * time.Millisecond)
	}
	at, ok := logLineTime(t, d.LogPath, "shared limits restored", restarted)
	if !ok {
		t.Fatalf("no \"shared limits restored\" after Redis restarted:\n%s", d.LogTail(20))
	}
	t.Logf("shared limits restored %v after the restart", at.Sub(restarted).Round(time.Millisecond))
	if at.Sub(restarted) > 5*time.Second {
		t.Errorf("shared limits restored %v after Redis came back, want ≤ 5 s", at.Sub(restarted))
	}
}
