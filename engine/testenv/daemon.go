package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// Daemon is a running `sluice serve` subprocess with its own directory
// holding the config, the spool, the acct CSVs and the captured log.
type Daemon struct {
	tb         testing.TB
	bin        string
	Dir        string // the daemon's directory; kept if the test fails
	ConfigPath string // Dir/sluice.toml
	SpoolDir   string
	LogDir     string // where acct-YYYY-MM-DD.csv files appear
	LogPath    string // Dir/sluice.log: the daemon's stderr and stdout, across restarts
	addr       string
	opts       daemonOptions

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	exitErr error         // valid once done is closed
}

type daemonOptions struct {
	readyTimeout time.Duration
	stopTimeout  time.Duration
	env          []string
	args         []string
}

// Option adjusts StartDaemon.
type Option func(*daemonOptions)

// WithReadyTimeout sets how long to wait for the listener [15s].
func WithReadyTimeout(d time.Duration) Option {
	return func(o *daemonOptions) { o.readyTimeout = d }
}

// WithStopTimeout sets how long Stop waits after SIGTERM before SIGKILL [30s].
func WithStopTimeout(d time.Duration) Option {
	return func(o *daemonOptions) { o.stopTimeout = d }
}

// WithArgs adds arguments after `serve --config FILE`, e.g. "--pprof", addr.
func WithArgs(args ...string) Option {
	return func(o *daemonOptions) { o.args = append(o.args, args...) }
}

// WithEnv adds "KEY=value" entries to the daemon's environment.
func WithEnv(kv ...string) Option {
	return func(o *daemonOptions) { o.env = append(o.env, kv...) }
}

// StartDaemon writes cfg (TOML text) into a new directory, adding spool-dir
// and log-dir inside it unless cfg sets them, starts `sluice serve` and
// waits until the first listener's address accepts TCP. The daemon is
// stopped (SIGTERM) when the test ends; a non-zero exit then fails the test.
// If the test failed, the directory is kept and the log's tail is printed.
func StartDaemon(tb testing.TB, cfg string, opts ...Option) *Daemon {
	tb.Helper()
	bin := BuildSluice(tb)
	d := &Daemon{tb: tb, bin: bin, opts: daemonOptions{readyTimeout: 15 * time.Second, stopTimeout: 30 * time.Second}}
	for _, o := range opts {
		o(&d.opts)
	}
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		tb.Fatalf("daemon dir: %v", err)
	}
	d.Dir = dir
	tb.Cleanup(d.cleanup)

	text, err := d.prepareConfig(cfg)
	if err != nil {
		tb.Fatalf("config: %v\n%s", err, cfg)
	}
	d.ConfigPath = filepath.Join(dir, "sluice.toml")
	if err := os.WriteFile(d.ConfigPath, []byte(text), 0o600); err != nil {
		tb.Fatalf("write config: %v", err)
	}
	d.LogPath = filepath.Join(dir, "sluice.log")
	d.start()
	return d
}

// prepareConfig finds the listener address and the directories, and adds
// spool-dir and log-dir when cfg lacks them.
func (d *Daemon) prepareConfig(cfg string) (string, error) {
	var probe struct {
		SpoolDir  string `toml:"spool-dir"`
		LogDir    string `toml:"log-dir"`
		Listeners []struct {
			Address string `toml:"address"`
		} `toml:"listener"`
	}
	if _, err := toml.Decode(cfg, &probe); err != nil {
		return "", err
	}
	if len(probe.Listeners) == 0 || probe.Listeners[0].Address == "" {
		return "", errors.New("no [[listener]] address")
	}
	d.addr = probe.Listeners[0].Address
	var head strings.Builder
	if probe.SpoolDir == "" {
		probe.SpoolDir = filepath.Join(d.Dir, "spool")
		fmt.Fprintf(&head, "spool-dir = %s\n", tomlString(probe.SpoolDir))
	}
	if probe.LogDir == "" {
		probe.LogDir = filepath.Join(d.Dir, "log")
		fmt.Fprintf(&head, "log-dir = %s\n", tomlString(probe.LogDir))
	}
	d.SpoolDir = absIn(d.Dir, probe.SpoolDir)
	d.LogDir = absIn(d.Dir, probe.LogDir)
	return head.String() + cfg, nil
}

func absIn(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p) // the daemon runs with Dir as working directory
}

// Addr returns the listener address, "ip:port".
func (d *Daemon) Addr() string { return d.addr }

// start launches the process and waits for its listener.
func (d *Daemon) start() {
	d.tb.Helper()
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.tb.Fatalf("daemon log: %v", err)
	}
	fmt.Fprintf(logf, "=== testenv: starting %s serve --config %s at %s\n", d.bin, d.ConfigPath, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(d.bin, append([]string{"serve", "--config", d.ConfigPath}, d.opts.args...)...)
	cmd.Dir = d.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), d.opts.env...)
	if err := cmd.Start(); err != nil {
		logf.Close()
		d.tb.Fatalf("start sluice: %v", err)
	}
	done := make(chan struct{})
	d.mu.Lock()
	d.cmd, d.done, d.exitErr = cmd, done, nil
	d.mu.Unlock()
	// Owned by the Daemon: ends when the process does, which Stop, Kill or
	// cleanup guarantee.
	go func() {
		err := cmd.Wait()
		logf.Close()
		d.mu.Lock()
		d.exitErr = err
		d.mu.Unlock()
		close(done)
	}()
	if err := waitListening(d.addr, d.opts.readyTimeout, done); err != nil {
		d.Kill()
		d.tb.Fatalf("sluice did not become ready: %v (exit: %v)\n%s", err, d.ExitErr(), d.LogTail(40))
	}
}

// Running reports whether the process is alive.
func (d *Daemon) Running() bool {
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// ExitErr returns the last exit status (nil for exit 0 or still running).
func (d *Daemon) ExitErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exitErr
}

// Pid returns the current process id, or 0.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Stop sends SIGTERM and waits for the exit (SIGKILL after the stop
// timeout). A graceful stop must exit 0; anything else fails the test.
func (d *Daemon) Stop() {
	d.tb.Helper()
	if err := d.stop(); err != nil {
		d.tb.Errorf("sluice stop: %v\n%s", err, d.LogTail(30))
	}
}

func (d *Daemon) stop() error {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil || !d.Running() {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(d.opts.stopTimeout):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("no exit %v after SIGTERM; killed", d.opts.stopTimeout)
	}
	if err := d.ExitErr(); err != nil {
		return fmt.Errorf("exit after SIGTERM: %v", err)
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (d *Daemon) Kill() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil || done == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart stops the daemon if it runs (gracefully) and starts it again on
// the same config and spool.
func (d *Daemon) Restart() {
	d.tb.Helper()
	if d.Running() {
		d.Stop()
	}
	d.start()
}

// Acct returns every acct row written so far, from all acct-*.csv files.
func (d *Daemon) Acct() []Record {
	d.tb.Helper()
	recs, err := ReadAcctDir(d.LogDir)
	if err != nil {
		d.tb.Fatalf("read acct: %v", err)
	}
	return recs
}

// WaitAcct polls the acct files until at least n rows satisfy pred (nil
// matches all) and returns those rows; it fails tb after timeout.
func (d *Daemon) WaitAcct(tb testing.TB, pred func(Record) bool, n int, timeout time.Duration) []Record {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs, err := ReadAcctDir(d.LogDir)
		got := Filter(recs, pred)
		if err == nil && len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			tb.Fatalf("acct: %d of %d wanted rows after %v (read error: %v); all rows by type: %s\n%s",
				len(got), n, timeout, err, countTypes(recs), sample(recs, 10))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countTypes(recs []Record) string {
	m := map[string]int{}
	for _, r := range recs {
		m[r.Type()]++
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// sample renders the last n records.
func sample(recs []Record, n int) string {
	if len(recs) > n {
		recs = recs[len(recs)-n:]
	}
	var b strings.Builder
	for _, r := range recs {
		b.WriteString("  ")
		b.WriteString(r.String())
		b.WriteString("\n")
	}
	return b.String()
}

// LogTail returns the last n lines of the daemon's captured output.
func (d *Daemon) LogTail(n int) string {
	data, err := os.ReadFile(d.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(data, n)
}

func tail(data []byte, n int) string {
	data = bytes.TrimRight(data, "\n")
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// cleanup stops the daemon and removes its directory, or keeps it and
// prints the log's tail when the test failed.
func (d *Daemon) cleanup() {
	if err := d.stop(); err != nil {
		d.tb.Errorf("sluice stop at cleanup: %v", err)
	}
	if d.tb.Failed() {
		d.tb.Logf("sluice dir kept: %s\n--- tail of %s ---\n%s", d.Dir, d.LogPath, d.LogTail(60))
		return
	}
	os.RemoveAll(d.Dir)
}

// CheckConfig runs `sluice check-config` on cfg and returns its combined
// output and exit error (nil when the config is valid).
func CheckConfig(tb testing.TB, cfg string) (string, error) {
	tb.Helper()
	bin := BuildSluice(tb)
	path := filepath.Join(tb.TempDir(), "sluice.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		tb.Fatalf("write config: %v", err)
	}
	out, err := exec.Command(bin, "check-config", "--config", path).CombinedOutput()
	return string(out), err
}
