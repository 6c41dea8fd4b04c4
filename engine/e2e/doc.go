// Package e2e runs the sluice binary end to end against real peers on
// loopback: a DNS server (dns/dnstest), SMTP sinks (testenv.Sink, Postfix
// smtp-sink), swaks and Python's smtplib. Each test gets its own daemon and
// its own /24 inside 127.20.0.0/16 for sinks (port 25) and the listener.
// Assertions count acct rows and messages at the sinks, never log lines.
//
// Addresses: 127.20.N.0/24 belongs to test N (1 EndToEnd, 2 TemporaryFailure,
// 3 PermanentFailure, 4 Expiry, 5 DNS, 6 CrashSafety, 7 RelayControl,
// 8 Interop, 9 BadInput); 127.20.250.0/24 is testenv's own.
package e2e
