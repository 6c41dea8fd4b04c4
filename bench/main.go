// Command bench measures Sluice's throughput against a realistic sink and
// compares it with the SMTP ceiling of the same run (the generator sending
// straight to the sink):
//
//	go run ./bench clean     [flags]   5 KB messages to 20 domains
//	go run ./bench deferrals [flags]   10% 451 on 2 domains, retried after 2s
//	go run ./bench large     [flags]   100 KB bodies
//	go run ./bench latency   [flags]   full speed, then paced at half of it
//	go run ./bench backlog   [flags]   1M recipients queued with the sink closed, restart, drain
//	go run ./bench peer      [flags]   the clean load through sluice and through a Postfix relay
//	go run ./bench dkim      [flags]   the clean load signed with RSA-2048, against the signing ceiling
//	go run ./bench crash     [flags]   100,000 messages, 5 × kill -9 and restart; loss must be 0, duplicates ≤ 0.1%
//	go run ./bench redis-fault [flags] DEBUG SLEEP, then kill and restart redis-server, under a paced load
//	go run ./bench sink      [flags]   only the sink, until interrupted
//	go run ./bench all       [flags]   clean, deferrals, large, latency, peer and backlog, with a summary
//
// Every run is bounded by
// --messages (or --rcpts) and --timeout. Nothing here asserts speed; the
// tests of this package check the harness itself with small loads, and
// BenchmarkRelay (go test -bench . ./bench) keeps the smtp-source figure.
//
// Addresses: 127.30.NET.1–20:25 sinks, 127.30.NET.200:2525 the daemon,
// 127.30.NET.201:25 Postfix; the daemon delivers from 4 VMTAs on
// 127.0.0.2–5 in its pool "default".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-mta/sluice/bench/scenario"
	"github.com/sluice-mta/sluice/bench/sink"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, "; ") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(os.Stderr, "usage: go run ./bench SCENARIO [flags]; scenarios: clean deferrals large latency backlog peer throttled dkim redis crash redis-fault sink")
		return 2
	}
	name := args[0]
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var p scenario.Params
	var replies multi
	var jsonOut bool
	var sinkAddrs string
	p.Scenario = name
	fs.IntVar(&p.Messages, "messages", 20000, "messages per run")
	fs.IntVar(&p.Recipients, "rcpts", 1_000_000, "backlog: recipients to queue")
	fs.IntVar(&p.RcptsPerMsg, "rcpts-per-msg", 0, "recipients per message [1; backlog 100]")
	fs.IntVar(&p.Sessions, "sessions", 16, "concurrent generator sessions")
	fs.IntVar(&p.PerSession, "per-session", 100, "messages per generator connection")
	fs.StringVar(&p.Size, "size", "", `body sizes: "5k" or "1k:60,5k:30,100k:10" [5k; large 100k; backlog 1k]`)
	fs.IntVar(&p.Domains, "domains", 20, "recipient domains, each with an MX on its own sink address")
	fs.Float64Var(&p.Rate, "rate", 0, "pace the generator at this many msg/s (0: as fast as possible)")
	fs.DurationVar(&p.Latency, "latency", 0, "sink latency per round trip")
	fs.Var(&replies, "reply", `sink rule "DOMAIN:PCT%:ACTION" (ACTION "451 4.7.1 text", drop, garbage, tarpit); repeatable`)
	fs.IntVar(&p.MaxSMTPOut, "max-smtp-out", 20, "daemon connections per domain and VMTA")
	fs.IntVar(&p.VMTAs, "vmtas", 4, "VMTAs on 127.0.0.2… in the pool \"default\" (-1: only the built-in VMTA, from 127.0.0.2)")
	fs.DurationVar(&p.Timeout, "timeout", 10*time.Minute, "hard limit of the whole run")
	fs.IntVar(&p.Net, "net", 1, "use addresses 127.30.NET.x")
	fs.StringVar(&p.Sluice, "sluice", "", "sluice binary (default: build ./cmd/sluice)")
	fs.StringVar(&p.PprofDir, "pprof", "", "write the daemon's CPU and heap profiles into this directory")
	fs.IntVar(&p.PprofSeconds, "pprof-seconds", 10, "length of the CPU profile, from the start of injection")
	fs.StringVar(&p.SinkLog, "sink-log", "", "write the sink's JSONL log here")
	fs.BoolVar(&p.Keep, "keep", false, "keep the work directory (daemon spool, acct, log)")
	fs.IntVar(&p.Kills, "kills", 5, "crash: kill -9 the daemon this many times during the run")
	fs.BoolVar(&p.Encrypt, "encrypt", false, "encrypt the daemon's spool at rest (AES-256-GCM)")
	fs.BoolVar(&jsonOut, "json", false, "print JSON instead of a table")
	fs.StringVar(&sinkAddrs, "listen", "127.30.1.1:2525", "sink scenario: comma-separated addresses")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	p.Replies = replies
	if name == "crash" && !flagSet(fs, "messages") {
		p.Messages = 100_000 // issue 10: 100,000 messages, 5 kills
	}
	p.Progress = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if name == "sink" {
		return runSink(ctx, strings.Split(sinkAddrs, ","), replies, p)
	}
	if p.PprofDir != "" {
		if err := os.MkdirAll(p.PprofDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if name == "all" {
		return runAll(ctx, p, jsonOut)
	}
	res, err := scenario.Run(ctx, p)
	if errors.Is(err, scenario.ErrNotAvailable) {
		fmt.Printf("%s: %v\n", name, err)
		return 0
	}
	if res != nil && (err == nil || len(res.Phases) > 0) {
		if jsonOut {
			res.WriteJSON(os.Stdout)
		} else {
			res.WriteTable(os.Stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", name, err)
		return 1
	}
	return 0
}

// runSink serves only the sink until interrupted or the timeout passes,
// then prints its counts.
func runSink(ctx context.Context, addrs, replies []string, p scenario.Params) int {
	rules := sink.Rules{}
	for _, r := range replies {
		if err := rules.Add(r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	s, err := sink.Start(sink.Options{Addrs: addrs, Rules: rules, Latency: p.Latency, LogPath: p.SinkLog})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "sink on %s; interrupt to stop\n", strings.Join(addrs, ", "))
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	<-ctx.Done()
	s.Close()
	fmt.Println(s.Stats())
	return 0
}

// runAll runs every available scenario in turn with the same flags (the
// backlog with --rcpts) and prints each report, then a summary against the
// targets of issue 3.
func runAll(ctx context.Context, p scenario.Params, jsonOut bool) int {
	var all []*scenario.Result
	code := 0
	for _, name := range []string{"clean", "deferrals", "large", "latency", "throttled", "dkim", "redis", "peer", "backlog"} {
		q := p
		q.Scenario = name
		if name == "large" && p.Size != "" {
			q.Size = ""
		}
		if p.PprofDir != "" {
			q.PprofDir = filepath.Join(p.PprofDir, name)
			os.MkdirAll(q.PprofDir, 0o755)
		}
		res, err := scenario.Run(ctx, q)
		if res != nil {
			all = append(all, res)
			if !jsonOut {
				res.WriteTable(os.Stdout)
				fmt.Println()
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", name, err)
			code = 1
		}
		if ctx.Err() != nil {
			break
		}
	}
	if jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(all)
		return code
	}
	scenario.WriteSummary(os.Stdout, all)
	return code
}

// flagSet reports whether the command line set the named flag.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
