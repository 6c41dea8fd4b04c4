package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// BuildSluice builds ./cmd/sluice of the module containing the working
// directory into dir and returns the binary's path.
func BuildSluice(dir string) (string, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sluice")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	return bin, nil
}

// daemon is a `sluice serve` subprocess.
type daemon struct {
	bin, dir, config, logDir, addr, pprof string
	cmd                                   *exec.Cmd
	done                                  chan struct{}
	started                               time.Time
}

// startDaemon writes cfg into dir (with spool-dir and log-dir inside it)
// and starts sluice, waiting up to ready for its listener at addr.
func startDaemon(bin, dir, cfg, addr, pprofAddr string, ready time.Duration) (*daemon, error) {
	d := &daemon{bin: bin, dir: dir, addr: addr, pprof: pprofAddr,
		config: filepath.Join(dir, "sluice.toml"), logDir: filepath.Join(dir, "log")}
	head := fmt.Sprintf("spool-dir = %q\nlog-dir = %q\n", filepath.Join(dir, "spool"), d.logDir)
	if err := os.WriteFile(d.config, []byte(head+cfg), 0o600); err != nil {
		return nil, err
	}
	return d, d.start(ready)
}

func (d *daemon) start(ready time.Duration) error {
	logf, err := os.OpenFile(filepath.Join(d.dir, "sluice.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{"serve", "--config", d.config}
	if d.pprof != "" {
		args = append(args, "--pprof", d.pprof)
	}
	d.cmd = exec.Command(d.bin, args...)
	d.cmd.Dir = d.dir
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	d.done = make(chan struct{})
	done, cmd := d.done, d.cmd
	go func() { // owned by d: ends with the process, which stop or kill end
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	deadline := time.Now().Add(ready)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("sluice exited at start: %s\n%s", cmd.ProcessState, d.logTail())
		default:
		}
		if c, err := net.DialTimeout("tcp", d.addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.kill()
	return fmt.Errorf("sluice not listening on %s after %v\n%s", d.addr, ready, d.logTail())
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// stop sends SIGTERM and waits up to timeout, then kills.
func (d *daemon) stop(timeout time.Duration) error {
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if !d.cmd.ProcessState.Success() {
			return fmt.Errorf("sluice exit: %s", d.cmd.ProcessState)
		}
		return nil
	case <-time.After(timeout):
		d.kill()
		return errors.New("sluice did not stop; killed")
	}
}

func (d *daemon) kill() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Kill()
	<-d.done
}

func (d *daemon) logTail() string {
	data, _ := os.ReadFile(filepath.Join(d.dir, "sluice.log"))
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// profile fetches /debug/pprof/NAME?QUERY from the daemon into path.
func (d *daemon) profile(ctx context.Context, name, query, path string) error {
	if d.pprof == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+d.pprof+"/debug/pprof/"+name+"?"+query, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("pprof %s: %s", name, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(resp.Body, 1<<30)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
