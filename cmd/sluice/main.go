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
  version                       print the version
`

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
