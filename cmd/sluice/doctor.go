package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/dns"
	"github.com/sluice-mta/sluice/engine/doctor"
)

// doctorCmd runs `sluice doctor --config FILE [--json]`: the DNS checks of
// engine/doctor for every VMTA and sending domain of the configuration,
// through its [dns] servers. It exits 1 when a check fails.
func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (TOML)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "sluice doctor: --config FILE is required")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	res, err := dns.New(dns.Config{Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout.D()}, zap.NewNop())
	if err != nil {
		fmt.Fprintf(stderr, "sluice doctor: dns: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rs := doctor.Run(ctx, res, doctor.FromConfig(cfg))
	if *asJSON {
		err = doctor.WriteJSON(stdout, rs)
	} else {
		err = doctor.WriteTable(stdout, rs)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sluice doctor: %v\n", err)
		return 1
	}
	if doctor.Worst(rs) == doctor.Fail {
		return 1
	}
	return 0
}
