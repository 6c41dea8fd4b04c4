// Package fbl is where Sluice handles what comes back after delivery:
// complaint reports from feedback loops and asynchronous bounces. Its
// subpackages each do one thing:
//
//   - fbl/trace builds and checks X-Sluice-Ref, the compact HMAC-signed
//     trace header carried by every outgoing message (recipient, job, VMTA,
//     source, message id), with key rotation; and Gmail's Feedback-ID value.
//   - fbl/arf parses complaint reports: RFC 5965 ARF inside RFC 6522
//     multipart/report, redacted reports (RFC 6590), authentication-failure
//     reports (RFC 6591) and Microsoft JMRP, and attributes each to a
//     recipient, trusting the authenticated trace header first.
//   - fbl/dsn parses bounces: RFC 3464 delivery status notifications, common
//     non-standard bounces by heuristics, and tells auto-replies (RFC 3834)
//     apart; each failed recipient gets an engine/bounce category.
//   - fbl/suppress keeps the suppression list, on one node or shared in Redis.
//   - fbl/unsub does RFC 8058 one-click unsubscribe: token, headers, handler.
//   - fbl/guard pauses a job or VMTA whose complaint rate crosses the limit.
//
// The daemon puts them to work through three more: fbl/ingest acts on the
// reports that reach Sluice's own addresses (accounting, suppression, the
// guard, cancelling queued mail), fbl/stamp adds the outgoing headers
// (Feedback-ID and List-Unsubscribe at spool time, the trace header per
// transaction) and fbl/api serves the admin API's report and suppression
// routes.
//
// Parsers read at most 10 MiB, cap the MIME structure they build and never
// panic on input. The corpus test in this directory runs the real reports of
// testdata/ (see testdata/README.md) against their answer key.
package fbl
