package testenv

import (
	"context"
	"os/exec"
	"time"
)

// RunClient runs an external client program (swaks, python3) with a
// one-minute bound and returns its combined output.
func RunClient(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
