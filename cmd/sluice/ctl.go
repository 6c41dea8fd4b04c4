package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sluice-mta/sluice/engine/config"
)

// The operator's commands (show, pause, resume, delete, reload) talk to a
// running daemon's admin API. The address and the token come from --server
// and --token (or $SLUICE_ADMIN_TOKEN), else from the [admin] table of
// --config. Output is aligned tables, or the API's JSON with --json. Any
// failure exits non-zero: 1 for an error from the daemon or the network,
// 2 for a usage error.

const ctlUsage = `operator commands (talk to the admin API of a running daemon):
  show status|queues|topdomains|jobs|vmtas   show the daemon's state
  show queue NAME                            one queue and its last events
  pause queue PATTERN [--reason TEXT]        stop attempts, e.g. gmail.com/* or */vmta1
  resume queue PATTERN                       lift the pauses PATTERN covers
  resume job NAME                            release a held job
  delete --job NAME | --queue PATTERN        bounce queued mail (category admin)
  reload                                     apply the config file again
flags: --config FILE | --server HOST:PORT --token TOKEN ($SLUICE_ADMIN_TOKEN); --json
`

// ctl is one operator command's connection to the daemon.
type ctl struct {
	base   string // "http://host:port"
	token  string
	json   bool
	stdout io.Writer
	client *http.Client
}

// ctlFlags parses the shared flags and the command's positional words;
// flags may come before or after them.
func ctlFlags(cmd string, args []string, stderr io.Writer, extra func(fs *flag.FlagSet)) (*ctl, []string, error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file whose [admin] table names the API")
	server := fs.String("server", "", "admin API address, host:port or http://host:port")
	token := fs.String("token", "", "admin bearer token (default $SLUICE_ADMIN_TOKEN)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if extra != nil {
		extra(fs)
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	c := &ctl{json: *asJSON, token: *token, client: &http.Client{Timeout: 2 * time.Minute}}
	if c.token == "" {
		c.token = os.Getenv("SLUICE_ADMIN_TOKEN")
	}
	addr := *server
	if *path != "" && (addr == "" || c.token == "") {
		cfg, err := config.Load(*path)
		if err != nil {
			return nil, nil, err
		}
		if cfg.Admin == nil {
			return nil, nil, fmt.Errorf("%s has no [admin] table: the daemon serves no admin API", *path)
		}
		if addr == "" {
			addr = dialable(cfg.Admin.Listen)
		}
		if c.token == "" {
			if c.token, err = cfg.Admin.TokenValue(); err != nil {
				return nil, nil, err
			}
		}
	}
	if addr == "" {
		return nil, nil, fmt.Errorf("%w: give --config FILE, or --server HOST:PORT and --token", errUsage)
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	c.base = strings.TrimSuffix(addr, "/")
	return c, pos, nil
}

// errUsage marks a command line error (exit 2).
var errUsage = errors.New("usage")

// dialable turns a listen address into one to connect to: an unspecified
// host means this machine.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// apiError is an error answer of the API.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.msg, e.code) }

// call sends a request and decodes the JSON answer into out (when not
// nil); it returns the raw body for --json.
func (c *ctl) call(method, path string, body any, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return raw, &apiError{code: resp.StatusCode, msg: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("answer of %s: %w", path, err)
		}
	}
	return raw, nil
}

// runCtl runs one operator command and returns the exit code.
func runCtl(cmd string, args []string, stdout, stderr io.Writer) int {
	var reason, job, queuePat string
	extra := func(fs *flag.FlagSet) {
		switch cmd {
		case "pause":
			fs.StringVar(&reason, "reason", "", "why, shown with the queue")
		case "delete":
			fs.StringVar(&job, "job", "", "delete the queued mail of this job")
			fs.StringVar(&queuePat, "queue", "", "delete the queued mail of the queues matching this pattern")
			fs.StringVar(&reason, "reason", "", "the diagnostic of the bounces")
		}
	}
	c, pos, err := ctlFlags(cmd, args, stderr, extra)
	if err == nil {
		c.stdout = stdout
		err = c.dispatch(cmd, pos, reason, job, queuePat)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		if msg := strings.TrimPrefix(err.Error(), errUsage.Error()); msg != "" {
			fmt.Fprintf(stderr, "sluice %s%s\n", cmd, msg)
		}
		fmt.Fprint(stderr, ctlUsage)
		return 2
	default:
		fmt.Fprintf(stderr, "sluice %s: %v\n", cmd, err)
		return 1
	}
}

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

func (c *ctl) dispatch(cmd string, pos []string, reason, job, queuePat string) error {
	switch cmd {
	case "show":
		if len(pos) == 0 {
			return usageErr("what? status, queues, topdomains, jobs or vmtas")
		}
		return c.show(pos[0], pos[1:])
	case "pause", "resume":
		if len(pos) != 2 || (pos[0] != "queue" && !(cmd == "resume" && pos[0] == "job")) {
			return usageErr("give %s queue PATTERN%s", cmd, map[bool]string{true: " or resume job NAME"}[cmd == "resume"])
		}
		if pos[0] == "job" {
			return c.post("/api/v1/jobs/resume", map[string]string{"job": pos[1]}, func(m map[string]any) string {
				return fmt.Sprintf("job %s released", pos[1])
			})
		}
		body := map[string]string{"pattern": pos[1]}
		if reason != "" {
			body["reason"] = reason
		}
		return c.post("/api/v1/queues/"+cmd, body, func(m map[string]any) string {
			if cmd == "pause" {
				return fmt.Sprintf("paused %v (%v existing queue(s))", m["pattern"], m["queues"])
			}
			return fmt.Sprintf("resumed %v (%v pause(s) lifted)", m["pattern"], m["resumed"])
		})
	case "delete":
		if len(pos) != 0 || (job == "") == (queuePat == "") {
			return usageErr("give exactly one of --job NAME and --queue PATTERN")
		}
		body := map[string]string{"job": job, "queue": queuePat, "reason": reason}
		return c.post("/api/v1/delete", body, func(m map[string]any) string {
			what := "job " + job
			if job == "" {
				what = fmt.Sprintf("queue %v", m["queue"])
			}
			return fmt.Sprintf("%v recipient(s) of %s bounced", m["deleted"], what)
		})
	case "reload":
		if len(pos) != 0 {
			return usageErr("takes no arguments")
		}
		return c.post("/api/v1/reload", nil, func(m map[string]any) string {
			if r, _ := m["needs_restart"].([]any); len(r) > 0 {
				return fmt.Sprintf("config reloaded; these changes need a restart: %v", r)
			}
			return "config reloaded"
		})
	}
	return usageErr("unknown command")
}

// post sends a control request and prints its answer: JSON, or one line.
func (c *ctl) post(path string, body any, line func(map[string]any) string) error {
	var m map[string]any
	raw, err := c.call(http.MethodPost, path, body, &m)
	if err != nil {
		return err
	}
	if c.json {
		_, err = c.stdout.Write(raw)
		return err
	}
	fmt.Fprintln(c.stdout, line(m))
	return nil
}

// show prints one of the daemon's views.
func (c *ctl) show(what string, rest []string) error {
	path := map[string]string{"status": "/api/v1/status", "queues": "/api/v1/queues", "topdomains": "/api/v1/queues",
		"jobs": "/api/v1/jobs", "vmtas": "/api/v1/vmtas", "queue": ""}[what]
	switch {
	case what == "queue" && len(rest) == 1:
		path = "/api/v1/queues/" + url.PathEscape(rest[0])
		path = strings.ReplaceAll(path, "%2F", "/")
	case what == "queue" || path == "":
		return usageErr("show status|queues|topdomains|jobs|vmtas, or show queue NAME")
	case len(rest) > 0:
		return usageErr("show %s takes no more arguments", what)
	}
	raw, err := c.call(http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if c.json {
		_, err = c.stdout.Write(raw)
		return err
	}
	return printView(c.stdout, what, raw)
}
