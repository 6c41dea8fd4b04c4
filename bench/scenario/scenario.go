// Package scenario runs the benchmark scenarios: in one process tree an
// in-process DNS server with MX records for the bench domains, the sink on
// many loopback addresses, a `sluice serve` daemon with a generated config
// (or a Postfix relay), and the generator. Each relay run finishes when the
// accounting (or, for Postfix, the sink) shows every recipient done, and
// is compared with the ceiling of the same run: the generator sending
// straight to the sink.
package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sluice-mta/sluice/bench/gen"
	"github.com/sluice-mta/sluice/bench/sink"
	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/testenv"
)

// Params choose a scenario and its load. Zero fields take the defaults in
// brackets, or the scenario's own.
type Params struct {
	Scenario     string        // clean, deferrals, large, latency, backlog, peer
	Messages     int           // [20000] messages per run (not backlog)
	Recipients   int           // backlog: [1,000,000] recipients queued
	RcptsPerMsg  int           // [1; backlog 100]
	Sessions     int           // [16] generator sessions
	PerSession   int           // [100] messages per generator connection
	Size         string        // body sizes ["5k"; large "100k"; backlog "1k"]
	Domains      int           // [20] bench domains, each with its MX on its own sink address
	Rate         float64       // generator pacing, msg/s; 0 = as fast as possible
	Latency      time.Duration // sink round-trip latency
	Replies      []string      // extra sink rules, "DOMAIN:PCT%:ACTION"
	MaxSMTPOut   int           // [20] daemon connections per domain and VMTA
	VMTAs        int           // [4] VMTAs on 127.0.0.2…, in the pool "default"; -1: none (the built-in VMTA)
	Timeout      time.Duration // [10m] hard limit of the whole scenario
	Net          int           // [1] addresses are 127.30.Net.x
	Sluice       string        // daemon binary; "" builds ./cmd/sluice
	PprofDir     string        // write cpu.pprof and heap.pprof here
	PprofSeconds int           // [10] CPU profile length, from the start of injection
	SinkLog      string        // JSONL log of the sink
	Keep         bool          // keep the work directory
	Kills        int           // crash: [5] kill -9 during the run (crash.go)
	Encrypt      bool          // the daemon encrypts its spool ([spool] encryption-key-file)
	Progress     io.Writer     // progress lines [discarded]
}

// Phase is one measured run.
type Phase struct {
	Name       string  `json:"name"` // ceiling, sluice, postfix, sluice@half …
	Messages   int     `json:"messages"`
	Recipients int     `json:"recipients"`
	Seconds    float64 `json:"seconds"`
	InjectRate float64 `json:"inject_msgs_per_s"`
	E2ERate    float64 `json:"e2e_msgs_per_s"`
	P50        float64 `json:"p50_ms"`
	P95        float64 `json:"p95_ms"`
	P99        float64 `json:"p99_ms"`
	CPUPer1k   float64 `json:"cpu_s_per_1k_msgs"`       // daemon user+sys
	PeakRSSMB  float64 `json:"peak_rss_mb"`             // daemon VmHWM
	AcctLagMs  float64 `json:"acct_lag_ms"`             // from the last arrival at the sink to the last acct row seen
	BenchCPU1k float64 `json:"bench_cpu_s_per_1k_msgs"` // this process: generator and sink
	Busy       float64 `json:"machine_busy"`            // share of all cores busy during the run
	Sink       string  `json:"sink"`                    // sink counts after the run
}

// Backlog holds the backlog scenario's figures.
type Backlog struct {
	Recipients     int     `json:"recipients"`
	Messages       int     `json:"messages"`
	InjectSeconds  float64 `json:"inject_seconds"`
	RSSBaseMB      float64 `json:"rss_base_mb"`
	RSSQueuedMB    float64 `json:"rss_queued_mb"`
	BytesPerRcpt   float64 `json:"rss_bytes_per_queued_rcpt"` // (queued − base) / recipients
	StopSeconds    float64 `json:"stop_s"`                    // SIGTERM to exit, with the backlog queued
	RestartReadyS  float64 `json:"restart_ready_s"`           // exec to listener accepting
	RestartResumeS float64 `json:"restart_resume_s"`          // exec to first delivery at the sink
	DrainSeconds   float64 `json:"drain_seconds"`
	DrainRcptRate  float64 `json:"drain_rcpts_per_s"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
}

// Result is a scenario's report.
type Result struct {
	Scenario string             `json:"scenario"`
	LoadAvg  string             `json:"loadavg_before"`
	Size     string             `json:"size"`
	Phases   []Phase            `json:"phases"`
	Ratios   map[string]float64 `json:"ratios,omitempty"`
	Backlog  *Backlog           `json:"backlog,omitempty"`
	Crash    *Crash             `json:"crash,omitempty"`
	Fault    *RedisFault        `json:"redis_fault,omitempty"`
	Notes    []string           `json:"notes,omitempty"`
}

// ErrNotAvailable is returned for scenarios that wait on other features.
var ErrNotAvailable = errors.New("not available until the DKIM issue lands")

// env is the running infrastructure of one scenario.
type env struct {
	p       Params
	dir     string
	dns     *dnstest.Server
	sink    *sink.Sink
	rules   sink.Rules
	domains []string
	sinkIPs []string
	bin     string
	extra   string // raw TOML added to the daemon's config
}

func (p *Params) defaults() {
	if p.Messages == 0 {
		p.Messages = 20000
	}
	if p.Sessions == 0 {
		p.Sessions = 16
	}
	if p.PerSession == 0 {
		p.PerSession = 100
	}
	if p.Domains == 0 {
		p.Domains = 20
	}
	if p.VMTAs == 0 {
		p.VMTAs = 4
	}
	if p.MaxSMTPOut == 0 {
		p.MaxSMTPOut = 20
	}
	if p.Timeout == 0 {
		p.Timeout = 10 * time.Minute
	}
	if p.Net == 0 {
		p.Net = 1
	}
	if p.PprofSeconds == 0 {
		p.PprofSeconds = 10
	}
	if p.Progress == nil {
		p.Progress = io.Discard
	}
	if p.RcptsPerMsg == 0 {
		p.RcptsPerMsg = 1
	}
	if p.Kills == 0 {
		p.Kills = 5
	}
	switch p.Scenario {
	case "large":
		if p.Size == "" {
			p.Size = "100k"
		}
	case "backlog":
		if p.Size == "" {
			p.Size = "1k"
		}
		if p.Recipients == 0 {
			p.Recipients = 1_000_000
		}
		if p.RcptsPerMsg == 1 {
			p.RcptsPerMsg = 100
		}
	}
	if p.Size == "" {
		p.Size = "5k"
	}
}

// ip returns 127.30.NET.host, or 127.31.NET.host for the reliability
// scenarios (crash, redis-fault), which have a block of their own.
func (p *Params) ip(host int) string {
	if p.Scenario == "crash" || p.Scenario == "redis-fault" {
		return fmt.Sprintf("127.31.%d.%d", p.Net, host)
	}
	return fmt.Sprintf("127.30.%d.%d", p.Net, host)
}

// Run runs one scenario, bounded by p.Timeout.
func Run(ctx context.Context, p Params) (*Result, error) {
	p.defaults()
	switch p.Scenario {
	case "clean", "deferrals", "large", "latency", "backlog", "peer", "throttled", "dkim", "redis", "crash", "redis-fault":
	default:
		return nil, fmt.Errorf("unknown scenario %q (clean, deferrals, large, latency, backlog, peer, throttled, dkim, redis, crash, redis-fault)", p.Scenario)
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	e, err := newEnv(p)
	if err != nil {
		return nil, err
	}
	defer e.close()
	res := &Result{Scenario: p.Scenario, LoadAvg: loadAvg(), Size: p.Size, Ratios: map[string]float64{}}
	switch p.Scenario {
	case "backlog":
		err = e.backlog(ctx, res)
	case "peer":
		err = e.peer(ctx, res)
	case "latency":
		err = e.latency(ctx, res)
	case "redis":
		err = e.redisRelay(ctx, res)
	case "throttled":
		err = e.throttled(ctx, res)
	case "dkim":
		err = e.dkimRelay(ctx, res) // dkimsign.go
	case "crash":
		err = e.crash(ctx, res)
	case "redis-fault":
		err = e.redisFault(ctx, res)
	default:
		err = e.relay(ctx, res)
	}
	return res, err
}

func newEnv(p Params) (*env, error) {
	e := &env{p: p, rules: sink.Rules{}}
	var err error
	if e.dir, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
		return nil, err
	}
	if e.dns, err = dnstest.Listen(); err != nil {
		e.close()
		return nil, err
	}
	for i := range p.Domains {
		d := fmt.Sprintf("d%02d.bench.test", i)
		mx := fmt.Sprintf("mx%02d.bench.test", i)
		ip := p.ip(1 + i%200)
		e.dns.SetMX(d, dnstest.MX{Pref: 10, Host: mx})
		e.dns.SetA(mx, ip)
		e.domains = append(e.domains, d)
		if i < 200 {
			e.sinkIPs = append(e.sinkIPs, ip)
		}
	}
	if p.Scenario == "deferrals" {
		for _, d := range e.domains[:min(2, len(e.domains))] {
			e.rules.Add(d + ":10%:451 4.7.1 Try again later")
		}
		for _, d := range e.domains[min(2, len(e.domains)):] {
			e.rules[d] = nil // no rules: shields them from "*" rules
		}
	}
	for _, r := range p.Replies {
		if err := e.rules.Add(r); err != nil {
			e.close()
			return nil, err
		}
	}
	if err := e.openSink(p.Scenario == "backlog"); err != nil {
		e.close()
		return nil, err
	}
	e.bin = p.Sluice
	if e.bin == "" {
		fmt.Fprintln(p.Progress, "building sluice…")
		if e.bin, err = BuildSluice(e.dir); err != nil {
			e.close()
			return nil, err
		}
	}
	return e, nil
}

func (e *env) openSink(hold bool) error {
	addrs := make([]string, len(e.sinkIPs))
	for i, ip := range e.sinkIPs {
		addrs[i] = ip + ":25"
	}
	s, err := sink.Start(sink.Options{Addrs: addrs, Rules: e.rules, Latency: e.p.Latency, LogPath: e.p.SinkLog, Hold: hold})
	if err != nil {
		return err
	}
	e.sink = s
	return nil
}

func (e *env) sinkAddrs() []string {
	out := make([]string, len(e.sinkIPs))
	for i, ip := range e.sinkIPs {
		out[i] = ip + ":25"
	}
	return out
}

func (e *env) close() {
	if e.sink != nil {
		e.sink.Close()
	}
	if e.dns != nil {
		e.dns.Close()
	}
	if !e.p.Keep && e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.p.Progress, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// genOptions returns the generator load of this scenario.
func (e *env) genOptions(addrs []string, messages int, runID string) gen.Options {
	sizes, _ := gen.ParseSizes(e.p.Size)
	var doms []gen.Weighted[string]
	for _, d := range e.domains {
		doms = append(doms, gen.Weighted[string]{Value: d, Weight: 1})
	}
	return gen.Options{
		Addrs: addrs, Messages: messages, Sessions: e.p.Sessions, PerSession: e.p.PerSession,
		Rcpts: e.p.RcptsPerMsg, Sizes: sizes, Domains: doms, Rate: e.p.Rate, RunID: runID,
		Job: "bench", Timeout: e.p.Timeout,
	}
}

// daemonConfig renders the daemon's config; the listener is on .200:2525.
func (e *env) daemonConfig(retry, timeout string) string {
	shutdown := "10s"
	if e.p.Scenario == "backlog" {
		shutdown = "2s" // its connections wait on a held greeting: cut them
	}
	c := testenv.Config{
		Listen:          e.p.ip(200) + ":2525",
		MaxSessions:     1024,
		MaxSessionsIP:   1024, // the generator connects from one address
		DNS:             []string{e.dns.Addr()},
		SourceIP:        "127.0.0.2",
		LogLevel:        logLevel(e.p.Scenario),
		AcctRecords:     []string{"d", "b"},
		ShutdownTimeout: shutdown,
		CommandTimeout:  timeout,
		DataTimeout:     timeout,
		Sources:         []testenv.Source{{CIDR: "127.0.0.0/8", Relay: true, ProcessXJob: true, ProcessXVirtualMTA: true}},
		Domains: map[string]testenv.Domain{"*": {
			MaxSMTPOut: e.p.MaxSMTPOut, MaxMsgPerConnection: 1000, RetryAfter: []string{retry},
			BounceAfter: "1d", UseStartTLS: testenv.Bool(false),
		}},
	}
	if e.p.VMTAs > 0 {
		c.SourceIP = ""
		var b strings.Builder
		var names []string
		for i := range e.p.VMTAs {
			name := fmt.Sprintf("v%d", i+1)
			names = append(names, fmt.Sprintf("%q", name))
			fmt.Fprintf(&b, "\n[[virtual-mta]]\nname = %q\nsmtp-source-host = \"127.0.0.%d %s.bench.test\"\n", name, 2+i, name)
		}
		fmt.Fprintf(&b, "\n[[virtual-mta-pool]]\nname = \"default\"\nvirtual-mtas = [%s]\n", strings.Join(names, ", "))
		c.Extra = b.String()
	}
	c.Extra += e.extra
	if e.p.Encrypt {
		c.Extra += fmt.Sprintf("\n[spool]\nencryption-key-file = %q\n", filepath.Join(e.dir, "spool.key"))
	}
	return c.TOML()
}

func (e *env) startDaemon(retry string) (*daemon, error) {
	return e.startDaemonTimeout(retry, "60s")
}

// startDaemonTimeout starts the daemon with a command timeout.
func (e *env) startDaemonTimeout(retry, timeout string) (*daemon, error) {
	pp := ""
	if e.p.PprofDir != "" {
		pp = e.p.ip(200) + ":6060"
	}
	dir := filepath.Join(e.dir, "daemon")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if e.p.Encrypt {
		if err := writeSpoolKey(filepath.Join(e.dir, "spool.key")); err != nil {
			return nil, err
		}
	}
	return startDaemon(e.bin, dir, e.daemonConfig(retry, timeout), e.p.ip(200)+":2525", pp, 2*time.Minute)
}

// percentiles returns p50, p95, p99 in milliseconds.
func percentiles(lat []time.Duration) (p50, p95, p99 float64) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	return at(0.50), at(0.95), at(0.99)
}

// latencies pairs the generator's 250 times with the sink's arrivals.
func latencies(r *gen.Result, arrivals map[string]time.Time) []time.Duration {
	var lat []time.Duration
	r.Accepted(func(mid string, at time.Time) {
		if a, ok := arrivals[mid]; ok {
			lat = append(lat, a.Sub(at))
		}
	})
	return lat
}

// logLevel is the daemon's: warn, or info where a scenario reads the log.
func logLevel(scenario string) string {
	if scenario == "redis-fault" {
		return "info" // redisfault.go looks for "shared limits restored"
	}
	return "warn"
}
