package main

import (
	"os"
	"runtime"

	"go.uber.org/zap"
)

// extraProcs is how many Ps serve adds to Go's default GOMAXPROCS.
//
// Why: every message is fsynced before its 250, and pebble's WAL writer
// sits in fdatasync for milliseconds at a time. A goroutine in a blocking
// system call keeps its P until the runtime's monitor takes it back, and
// the monitor, finding little to do between syncs, sleeps up to 10 ms. On
// a 2-core machine that left a core idle (iowait) about a tenth of the
// time while sessions waited to run; two spare Ps let them run on it. The
// bench dkim scenario measured 0.69 of the signing ceiling with the
// default and 0.74–0.78 with two more (bench/PERFORMANCE.md).
const extraProcs = 2

// setProcs raises GOMAXPROCS by extraProcs, unless the GOMAXPROCS
// environment variable chose a value.
func setProcs(log *zap.Logger) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	n := runtime.GOMAXPROCS(0) + extraProcs
	runtime.GOMAXPROCS(n)
	log.Debug("gomaxprocs", zap.Int("procs", n), zap.Int("cpus", runtime.NumCPU()))
}
