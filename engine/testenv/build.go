package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// build holds the one build of cmd/sluice shared by a test process.
// Deviation from "no global state": the binary is built once per process,
// which needs a process-wide once; nothing else is shared.
var build struct {
	once sync.Once
	dir  string // temp dir holding the binary, removed by Main
	path string
	err  error
}

// BuildSluice builds ./cmd/sluice once per test process, into a temp
// directory outside the repository, and returns the binary's path. When the
// test binary itself runs with -race the daemon is built with -race too
// (override with SLUICE_E2E_RACE=0 or 1). A build failure fails tb.
func BuildSluice(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		build.path, build.err = buildSluice()
	})
	if build.err != nil {
		tb.Fatalf("build sluice: %v", build.err)
	}
	return build.path
}

func buildSluice() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "sluice-testenv-bin-")
	if err != nil {
		return "", err
	}
	build.dir = dir
	bin := filepath.Join(dir, "sluice")
	args := []string{"build", "-o", bin}
	if wantRace() {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/sluice")
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// goTool returns the go command: from PATH, else from the running
// toolchain's GOROOT.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func wantRace() bool {
	switch os.Getenv("SLUICE_E2E_RACE") {
	case "0":
		return false
	case "1":
		return true
	}
	return raceEnabled
}

// ModuleRoot returns the directory holding go.mod, found by walking up from
// the working directory (a test's working directory is its package).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Main runs the tests and then removes the binary BuildSluice built. Use it
// from TestMain: func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	return code
}

// RequireTool returns the path of an external program (swaks, smtp-sink,
// redis-server, python3). If it is missing the test is skipped, unless the
// environment variable CI is set, in which case it fails.
func RequireTool(tb testing.TB, name string, candidates ...string) string {
	tb.Helper()
	for _, c := range append(candidates, name) {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s is not installed (CI requires it)", name)
	}
	tb.Skipf("%s is not installed; skipping (set CI=1 to make this a failure)", name)
	return ""
}
