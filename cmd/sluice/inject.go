package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/inject/campaign"
)

const injectUsage = `usage: sluice inject (--config FILE | --server HOST:PORT)
                     --template msg.eml --recipients list.csv --job NAME
                     [--via smtp|http] [--sessions 8] [--rate 500/s]
                     [--checkpoint FILE] [--sender ADDR] [--virtual-mta NAME]
                     [--token TOKEN] [--batch 1000] [--limit N]
`

// injectCmd is `sluice inject`: a CSV mail merge over SMTP or HTTP. The
// exit code is 1 only when nothing could be injected or the server could
// not be reached, 2 for bad usage.
func injectCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, injectUsage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "daemon configuration: take the server and token from it")
	server := fs.String("server", "", "SMTP listener (--via smtp) or admin API (--via http) as HOST:PORT")
	tmplPath := fs.String("template", "", "RFC 5322 message with text/template fields ({{.column}})")
	csvPath := fs.String("recipients", "", "CSV file; the header row names the columns, one is email")
	job := fs.String("job", "", "job name (X-Job over SMTP, job over HTTP)")
	via := fs.String("via", "smtp", "smtp or http")
	sessions := fs.Int("sessions", 8, "concurrent SMTP sessions or HTTP requests")
	rate := fs.String("rate", "", "at most this many messages per period, e.g. 500/s (default unlimited)")
	checkpoint := fs.String("checkpoint", "", "file recording accepted rows; a rerun skips them")
	sender := fs.String("sender", "", "envelope sender (default: the template's From address)")
	vmta := fs.String("virtual-mta", "", "VMTA or pool to send from")
	token := fs.String("token", "", "bearer token for --via http (default: from --config)")
	batch := fs.Int("batch", 1000, "recipients per HTTP request (at most 10000)")
	limit := fs.Int("limit", 0, "send at most this many rows in this run (0: all)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *tmplPath == "" || *csvPath == "" || *job == "" || (*cfgPath == "") == (*server == "") {
		fmt.Fprintln(stderr, "sluice inject: --template, --recipients, --job and one of --config or --server are required")
		fs.Usage()
		return 2
	}
	perSec, err := campaign.ParseRate(*rate)
	if err != nil {
		fmt.Fprintf(stderr, "sluice inject: --rate: %v\n", err)
		return 2
	}
	if *cfgPath != "" {
		if *server, *token, err = injectTarget(*cfgPath, *via, *token); err != nil {
			fmt.Fprintf(stderr, "sluice inject: %v\n", err)
			return 2
		}
	}
	tmpl, err := os.ReadFile(*tmplPath)
	if err != nil {
		fmt.Fprintf(stderr, "sluice inject: %v\n", err)
		return 2
	}
	f, err := os.Open(*csvPath)
	if err != nil {
		fmt.Fprintf(stderr, "sluice inject: %v\n", err)
		return 2
	}
	defer f.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sum, err := campaign.Run(ctx, campaign.Options{
		Template: tmpl, Recipients: f, Job: *job, Sender: *sender, VirtualMTA: *vmta,
		Via: *via, Server: *server, Token: *token, Sessions: *sessions, Rate: perSec,
		Batch: *batch, Checkpoint: *checkpoint, Limit: *limit,
		Progress: stderr, TTY: isTerminal(stderr),
	})
	if sum != nil {
		printSummary(stdout, sum, *csvPath)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sluice inject: %v\n", err)
		return 1
	}
	if sum.Accepted == 0 && sum.Rows > sum.Skipped {
		fmt.Fprintln(stderr, "sluice inject: nothing could be injected")
		return 1
	}
	return 0
}

func printSummary(w io.Writer, s *campaign.Summary, csvPath string) {
	fmt.Fprintf(w, "accepted %d, rejected %d, already accepted earlier %d, not sent %d, of %d rows in %s\n",
		s.Accepted, len(s.Rejected), s.Skipped, s.NotSent, s.Rows, s.Took.Round(1e6))
	for _, r := range s.Rejected {
		if r.Email != "" {
			fmt.Fprintf(w, "rejected: %s:%d <%s>: %s\n", csvPath, r.Line, r.Email, r.Reason)
		} else {
			fmt.Fprintf(w, "rejected: %s:%d: %s\n", csvPath, r.Line, r.Reason)
		}
	}
	if s.Interrupted {
		fmt.Fprintln(w, "interrupted: run again with the same --checkpoint to send the rest")
	}
}

// injectTarget finds the server and token in the daemon's configuration:
// the first SMTP listener, or the admin API with the [inject] token (else
// the admin token).
func injectTarget(path, via, token string) (server, tok string, err error) {
	cfg, err := config.Load(path)
	if err != nil {
		return "", "", err
	}
	addr := ""
	switch via {
	case "http":
		if cfg.Admin == nil {
			return "", "", fmt.Errorf("%s: no [admin] table: the HTTP API is not served", path)
		}
		addr = cfg.Admin.Listen
		if token == "" {
			if token, err = cfg.Inject.TokenValue(); err == nil && token == "" {
				token, err = cfg.Admin.TokenValue()
			}
			if err != nil {
				return "", "", err
			}
		}
	default:
		addr = cfg.Listeners[0].Address
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), token, nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
