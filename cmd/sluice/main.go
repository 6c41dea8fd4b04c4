// Command sluice is the Sluice mail engine: `sluice serve` runs the daemon,
// `sluice check-config` validates a configuration without starting anything.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: sluice <command> [flags]

commands:
  serve         --config FILE   run the daemon
                [--pprof ADDR]  also serve Go profiles (net/http/pprof) on a loopback ADDR
  check-config  --config FILE   validate a configuration and exit
  doctor        --config FILE [--json]  check PTR, SPF, DKIM and DMARC in DNS
  fbl ingest    --config FILE [REPORT...|-]  feed complaint reports to the daemon
  bounce ingest --config FILE [BOUNCE...|-]  feed bounces to the daemon
  suppress      add|remove|list|import|export --config FILE ...  the suppression list
  inject        --template F --recipients CSV --job NAME (--config F | --server H:P)  mail merge over SMTP or HTTP
  version                       print the version

` + ctlUsage

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve", "check-config":
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", "", "configuration file (TOML)")
		pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060)")
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if *path == "" {
			fmt.Fprintf(stderr, "sluice %s: --config FILE is required\n", cmd)
			return 2
		}
		if cmd == "check-config" {
			return checkConfig(*path, stdout, stderr)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if *pprofAddr != "" {
			stopPprof, err := startPprof(*pprofAddr)
			if err != nil {
				fmt.Fprintf(stderr, "sluice serve: --pprof: %v\n", err)
				return 2
			}
			defer stopPprof()
		}
		if err := serve(ctx, *path, stderr); err != nil {
			if !errors.Is(err, errLogged) {
				fmt.Fprintf(stderr, "sluice serve: %v\n", err)
			}
			return 1
		}
		return 0
	case "fbl", "bounce", "suppress": // fblcli.go: through the admin API
		return runFBL(cmd, rest, os.Stdin, stdout, stderr)
	case "show", "pause", "resume", "delete", "reload": // ctl.go: through the admin API
		return runCtl(cmd, rest, stdout, stderr)
	case "doctor": // doctor.go
		return doctorCmd(rest, stdout, stderr)
	case "inject": // inject.go: a CSV mail merge over SMTP or HTTP
		return injectCmd(rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "sluice", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
	return 2
}
