package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdUnit keeps cmd/sluice/sluice.service in step with the binary:
// its commands are ones run knows, and it grants what the README promises
// (port 25 as a plain user, many descriptors, time to shut down cleanly).
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("sluice.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("line %q is not key=value", line)
				continue
			}
			keys[section+k] = append(keys[section+k], v)
		}
	}
	one := func(k string) string {
		if v := keys[k]; len(v) == 1 {
			return v[0]
		}
		t.Errorf("%s: want exactly one, have %q", k, keys[k])
		return ""
	}
	for _, k := range []string{"[Service]ExecStart", "[Service]ExecStartPre"} {
		f := strings.Fields(one(k))
		if len(f) < 4 || f[2] != "--config" {
			t.Errorf("%s = %v: want BINARY COMMAND --config FILE", k, f)
			continue
		}
		// The command must exist: without --config it asks for the flag.
		var out, errb bytes.Buffer
		if code := run([]string{f[1]}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--config FILE is required") {
			t.Errorf("%s: `sluice %s` is not a command taking --config (exit %d: %s)", k, f[1], code, errb.String())
		}
	}
	if !strings.Contains(one("[Service]ExecStart"), " serve ") {
		t.Error("ExecStart does not run serve")
	}
	if v := one("[Service]AmbientCapabilities"); v != "CAP_NET_BIND_SERVICE" {
		t.Errorf("AmbientCapabilities = %q", v)
	}
	if v := one("[Service]User"); v == "" || v == "root" {
		t.Errorf("User = %q: run as a dedicated user", v)
	}
	if v := one("[Service]LimitNOFILE"); v == "" {
		t.Error("no LimitNOFILE")
	}
	if d, err := time.ParseDuration(one("[Service]TimeoutStopSec") + "s"); err != nil || d <= 30*time.Second {
		t.Errorf("TimeoutStopSec %v (%v): must exceed the default shutdown-timeout of 30s", d, err)
	}
	if one("[Service]ExecReload") != "/bin/kill -HUP $MAINPID" {
		t.Error("ExecReload must send SIGHUP")
	}
	// systemd's own check, where systemd is installed.
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		abs, _ := filepath.Abs("sluice.service")
		out, err := exec.Command(sa, "verify", "--man=no", abs).CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			// Only what it says of the unit counts; the binary and the
			// user need not exist on a build machine.
			if strings.HasPrefix(l, "sluice.service:") && !strings.Contains(l, "/usr/local/bin/sluice") && !strings.Contains(l, "User") {
				t.Errorf("systemd-analyze verify: %s (%v)", l, err)
			}
		}
	}
}
