package scenario

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-mta/sluice/bench/gen"
)

// RedisFault holds the figures of the redis-fault scenario.
type RedisFault struct {
	SleepS       float64 `json:"debug_sleep_s"`      // length of the DEBUG SLEEP
	MaxGapSleepS float64 `json:"max_gap_in_sleep_s"` // longest pause between two 250s while Redis slept
	MaxGapS      float64 `json:"max_gap_s"`          // longest pause between two 250s in the whole run
	OutageS      float64 `json:"outage_s"`           // redis-server killed for this long
	ReconvergeS  float64 `json:"reconverge_s"`       // restart to "shared limits restored" in the log (-1: never)
	Acked        int     `json:"acked"`
	Lost         int     `json:"lost"`
}

// redisFault runs a paced load through the daemon with its limits in a
// local redis-server, makes Redis sleep (DEBUG SLEEP) and later kills it
// (SIGKILL) and starts it again on the same port. It reports how long
// injection paused while Redis slept, how long after the restart the
// daemon logged its shared limits restored, and whether every message that
// got a 250 reached the sink.
func (e *env) redisFault(ctx context.Context, res *Result) error {
	const (
		sleepAt, sleepFor = 3 * time.Second, 2 * time.Second
		killAt, outage    = 8 * time.Second, 3 * time.Second
	)
	port, err := freePort()
	if err != nil {
		return err
	}
	rdir := filepath.Join(e.dir, "redis")
	os.MkdirAll(rdir, 0o700)
	stopRedis, err := startRedisOn(rdir, port)
	if err != nil {
		return err
	}
	defer func() { stopRedis() }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	e.extra = fmt.Sprintf("\n[redis]\nurl = \"redis://%s/0\"\n\n[mx-rollup.benchisp]\nmx-suffix = [\"bench.test\"]\nmax-msg-rate = \"100000/m\"\n", addr)
	d, err := e.startDaemon("1s")
	if err != nil {
		return err
	}
	defer d.stop(30 * time.Second)

	rate := e.p.Rate
	if rate == 0 {
		rate = 500
	}
	messages := min(e.p.Messages, int(rate*20)) // about 20 s of load
	opts := e.genOptions([]string{d.addr}, messages, "rf")
	opts.Rate = rate
	type genOut struct {
		r   *gen.Result
		err error
	}
	gc := make(chan genOut, 1)
	start := time.Now()
	go func() { // owned here: waited for below
		r, err := gen.Run(ctx, opts)
		gc <- genOut{r, err}
	}()
	e.progress("redis-fault: %d messages at %.0f/s; DEBUG SLEEP %v at %v, kill at %v for %v",
		messages, rate, sleepFor, sleepAt, killAt, outage)
	time.Sleep(time.Until(start.Add(sleepAt)))
	slept := time.Now()
	if err := redisCmd(addr, "DEBUG", "SLEEP", strconv.Itoa(int(sleepFor.Seconds()))); err != nil {
		return fmt.Errorf("redis-fault: DEBUG SLEEP (redis-server needs --enable-debug-command): %w", err)
	}
	time.Sleep(time.Until(start.Add(killAt)))
	stopRedis()
	e.progress("redis-fault: redis-server killed")
	time.Sleep(outage)
	restarted := time.Now()
	if stopRedis, err = startRedisOn(rdir, port); err != nil {
		return err
	}
	e.progress("redis-fault: redis-server restarted")
	g := <-gc
	if g.r == nil {
		return fmt.Errorf("redis-fault: %w", g.err)
	}
	var times []time.Time
	var acked []string
	g.r.Accepted(func(mid string, at time.Time) {
		acked = append(acked, mid)
		times = append(times, at)
	})
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	f := &RedisFault{SleepS: sleepFor.Seconds(), OutageS: outage.Seconds(), Acked: len(acked), ReconvergeS: -1}
	res.Fault = f
	for i := 1; i < len(times); i++ {
		gap := times[i].Sub(times[i-1]).Seconds()
		f.MaxGapS = max(f.MaxGapS, gap)
		if times[i].After(slept) && times[i-1].Before(slept.Add(sleepFor)) {
			f.MaxGapSleepS = max(f.MaxGapSleepS, gap)
		}
	}
	// Every acknowledged message at the sink?
	deadline := time.Now().Add(2 * time.Minute)
	for {
		arr := e.sink.Arrivals()
		f.Lost = 0
		for _, id := range acked {
			if _, ok := arr[id]; !ok {
				f.Lost++
			}
		}
		if f.Lost == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if at, ok := logTime(filepath.Join(d.dir, "sluice.log"), "shared limits restored", restarted); ok {
		f.ReconvergeS = at.Sub(restarted).Seconds()
	}
	el := time.Since(start).Seconds()
	res.Phases = append(res.Phases, Phase{Name: "sluice (redis faults)", Messages: len(acked), Recipients: len(acked),
		Seconds: el, InjectRate: g.r.Rate(), E2ERate: float64(len(acked)-f.Lost) / el, Sink: e.sink.Stats().String()})
	res.Ratios["lost"] = float64(f.Lost)
	res.Ratios["max 250 gap in DEBUG SLEEP (s)"] = f.MaxGapSleepS
	res.Ratios["reconverge (s)"] = f.ReconvergeS
	res.Notes = append(res.Notes, fmt.Sprintf("paced at %.0f msg/s; DEBUG SLEEP %.0f s at %v; redis-server killed at %v for %.0f s; generator errors: %v",
		rate, f.SleepS, sleepAt, killAt, f.OutageS, g.err))
	switch {
	case f.Lost > 0:
		return fmt.Errorf("redis-fault: %d of %d acknowledged messages lost", f.Lost, f.Acked)
	case f.ReconvergeS < 0 || f.ReconvergeS > 5:
		return fmt.Errorf("redis-fault: shared limits restored after %.1f s, want ≤ 5 s", f.ReconvergeS)
	case f.MaxGapSleepS > 1:
		return fmt.Errorf("redis-fault: injection paused %.1f s while Redis slept", f.MaxGapSleepS)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedisOn runs redis-server on 127.0.0.1:port with DEBUG allowed from
// loopback; stop kills it (SIGKILL) and is idempotent.
func startRedisOn(dir string, port int) (stop func(), err error) {
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir, "--enable-debug-command", "local")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redis-server (apt-get install redis-server): %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() // owned by stop
	stop = func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return stop, nil
		}
	}
	stop()
	return nil, fmt.Errorf("redis-server did not start on %s", addr)
}

// redisCmd sends one command in RESP and returns once it is written; the
// reply is not awaited (DEBUG SLEEP answers only after sleeping).
func redisCmd(addr string, args ...string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		c.Close()
		return err
	}
	go func() { // owned here: ends with the reply or after a minute
		c.SetReadDeadline(time.Now().Add(time.Minute))
		bufio.NewReader(c).ReadString('\n')
		c.Close()
	}()
	return nil
}

// logTime returns the time of the first JSON log line after since whose
// message contains msg.
func logTime(path, msg string, since time.Time) (time.Time, bool) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			TS  string `json:"ts"`
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || !strings.Contains(l.Msg, msg) {
			continue
		}
		t, err := time.Parse("2006-01-02T15:04:05.000Z0700", l.TS)
		if err == nil && t.After(since) {
			return t, true
		}
	}
	return time.Time{}, false
}
