package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-mta/sluice/engine/config"
)

// The daemon holds the spool's lock, so these commands talk to the running
// daemon over its admin API ([admin] in the same config file).

const fblUsage = `usage:
  sluice fbl ingest    --config FILE [REPORT...|-]   feed complaint reports (ARF, JMRP)
  sluice bounce ingest --config FILE [BOUNCE...|-]   feed bounces (DSN)
  sluice suppress add    --config FILE [--scope S] [--reason R] [--ttl 30d] [--note N] ADDR...
  sluice suppress remove --config FILE [--scope S] ADDR...
  sluice suppress list   --config FILE [--scope S|*] [--addr ADDR]
  sluice suppress import --config FILE CSV|-
  sluice suppress export --config FILE [--scope S|*]
`

// apiClient calls the admin API named by a config file.
type apiClient struct {
	base, token string
	hc          *http.Client
}

func newAPIClient(path string) (*apiClient, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if cfg.Admin == nil {
		return nil, fmt.Errorf("%s: no [admin] table: these commands talk to the daemon's admin API", path)
	}
	tok, err := cfg.Admin.TokenValue()
	if err != nil {
		return nil, err
	}
	return &apiClient{base: "http://" + cfg.Admin.Listen, token: tok, hc: &http.Client{Timeout: 5 * time.Minute}}, nil
}

// do sends one request and returns the body of a 2xx answer, or an error
// carrying the API's message.
func (c *apiClient) do(method, path string, body io.Reader, ctype string) ([]byte, error) {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin api: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 512<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			return out, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return out, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return out, nil
}

// runFBL runs `sluice fbl|bounce|suppress ...`.
func runFBL(cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, fblUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet(cmd+" "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (TOML)")
	scope := fs.String("scope", "", "suppression scope: \"\" global, a tenant, or * (list, export) for all")
	reason := fs.String("reason", "manual", "reason: complaint, hard-bounce, unsubscribe or manual")
	ttl := fs.String("ttl", "", "expire the entry after this long (e.g. 30d)")
	note := fs.String("note", "", "free text kept with the entry")
	addr := fs.String("addr", "", "look up one address (list)")
	var pos []string // flags may follow the arguments
	for {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if *path == "" {
		fmt.Fprintf(stderr, "sluice %s %s: --config FILE is required\n", cmd, sub)
		return 2
	}
	c, err := newAPIClient(*path)
	if err != nil {
		fmt.Fprintf(stderr, "sluice %s: %v\n", cmd, err)
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "sluice %s %s: %v\n", cmd, sub, err)
		return 1
	}
	switch cmd + " " + sub {
	case "fbl ingest", "bounce ingest":
		route := map[string]string{"fbl": "/api/v1/fbl", "bounce": "/api/v1/bounces"}[cmd]
		return ingestFiles(c, route, pos, stdin, stdout, stderr)
	case "suppress add":
		if len(pos) == 0 {
			fmt.Fprint(stderr, fblUsage)
			return 2
		}
		for _, a := range pos {
			b, _ := json.Marshal(map[string]string{"addr": a, "scope": *scope, "reason": *reason, "ttl": *ttl, "note": *note})
			if _, err := c.do("POST", "/api/v1/suppressions", bytes.NewReader(b), "application/json"); err != nil {
				return fail(fmt.Errorf("%s: %w", a, err))
			}
			fmt.Fprintf(stdout, "suppressed %s\n", a)
		}
		return 0
	case "suppress remove":
		if len(pos) == 0 {
			fmt.Fprint(stderr, fblUsage)
			return 2
		}
		for _, a := range pos {
			q := url.Values{"addr": {a}, "scope": {*scope}}
			if _, err := c.do("DELETE", "/api/v1/suppressions?"+q.Encode(), nil, ""); err != nil {
				return fail(fmt.Errorf("%s: %w", a, err))
			}
			fmt.Fprintf(stdout, "removed %s\n", a)
		}
		return 0
	case "suppress list":
		q := url.Values{"scope": {*scope}}
		if *addr != "" {
			q.Set("addr", *addr)
		}
		out, err := c.do("GET", "/api/v1/suppressions?"+q.Encode(), nil, "")
		if err != nil {
			return fail(err)
		}
		return printEntries(out, stdout, stderr)
	case "suppress import":
		if len(pos) != 1 {
			fmt.Fprint(stderr, fblUsage)
			return 2
		}
		r, closeFn, err := openArg(pos[0], stdin)
		if err != nil {
			return fail(err)
		}
		defer closeFn()
		out, err := c.do("POST", "/api/v1/suppressions/import", r, "text/csv")
		if err != nil {
			return fail(err)
		}
		stdout.Write(out)
		return 0
	case "suppress export":
		s := *scope
		if s == "" {
			s = "*"
		}
		out, err := c.do("GET", "/api/v1/suppressions/export?"+url.Values{"scope": {s}}.Encode(), nil, "")
		if err != nil {
			return fail(err)
		}
		stdout.Write(out)
		return 0
	}
	fmt.Fprintf(stderr, "sluice %s: unknown subcommand %q\n\n%s", cmd, sub, fblUsage)
	return 2
}

// ingestFiles posts each file (or standard input for "-" or none) as one
// report and prints what it did.
func ingestFiles(c *apiClient, route string, files []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		files = []string{"-"}
	}
	rc := 0
	for _, f := range files {
		r, closeFn, err := openArg(f, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", f, err)
			rc = 1
			continue
		}
		out, err := c.do("POST", route, r, "message/rfc822")
		closeFn()
		var res struct {
			Outcome    string   `json:"outcome"`
			Format     string   `json:"format"`
			Recipients []string `json:"recipients"`
			Result     *struct {
				Outcome string `json:"outcome"`
			} `json:"result"`
		}
		json.Unmarshal(out, &res)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", f, err)
			rc = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: %s %s %s\n", f, res.Outcome, res.Format, strings.Join(res.Recipients, ","))
	}
	return rc
}

func openArg(name string, stdin io.Reader) (io.Reader, func(), error) {
	if name == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func printEntries(out []byte, stdout, stderr io.Writer) int {
	var res struct {
		Suppressed *bool `json:"suppressed"`
		Entry      *entryJSON
		Entries    []entryJSON `json:"entries"`
		Truncated  bool        `json:"truncated"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		fmt.Fprintf(stderr, "sluice suppress list: bad answer: %v\n", err)
		return 1
	}
	if res.Suppressed != nil {
		if !*res.Suppressed {
			fmt.Fprintln(stdout, "not suppressed")
			return 0
		}
		res.Entries = []entryJSON{*res.Entry}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDR\tSCOPE\tREASON\tADDED\tEXPIRES\tNOTE")
	for _, e := range res.Entries {
		scope := e.Scope
		if scope == "" {
			scope = "-" // global
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Addr, scope, e.Reason, fmtTime(e.Added), fmtTime(e.Expires), e.Note)
	}
	tw.Flush()
	if res.Truncated {
		fmt.Fprintln(stderr, "(truncated: use `sluice suppress export` for the whole list)")
	}
	return 0
}

type entryJSON struct {
	Addr    string    `json:"addr"`
	Scope   string    `json:"scope"`
	Reason  string    `json:"reason"`
	Added   time.Time `json:"added"`
	Expires time.Time `json:"expires"`
	Note    string    `json:"note"`
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
