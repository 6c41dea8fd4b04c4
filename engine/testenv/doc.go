// Package testenv is the end-to-end test harness: it builds the sluice
// binary once per test process, runs it as a subprocess with a generated
// config, reads its accounting CSV, and provides real peers on loopback: an
// SMTP sink on go-smtp, Postfix smtp-sink, a pipelining-detecting TCP proxy,
// redis-server, and injecting clients. Everything a helper starts is stopped
// by tb.Cleanup; a failed test keeps the daemon's directory and prints the
// tail of its log. Tests assert on acct rows and sink contents, never on log
// lines.
package testenv
