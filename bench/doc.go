// Package bench measures Sluice's throughput against real peers: Postfix's
// smtp-source injects, smtp-sink receives, and the figures are compared with
// smtp-source sending straight to smtp-sink in the same run. Run it with
// `make bench` (go test -bench . -benchtime 1x ./bench/). Nothing here
// asserts speed; the benchmarks report figures.
package bench
