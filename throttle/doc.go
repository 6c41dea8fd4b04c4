// Package throttle holds the coordination primitives behind traffic shaping:
// message rates (GCRA), connection slots (leases that expire by themselves),
// per-queue modes (normal, backoff, disabled, suspended) and shared counters.
//
// One contract, Backend, has three implementations that pass one conformance
// suite: Local (in process), Redis (shared by every node of a fleet, also on
// Redis Cluster) and Failover (Redis, falling back to Local shares of each
// limit while Redis cannot be reached). Keys are opaque strings chosen by the
// caller, typically a queue such as "google/vmta1"; every limit is passed on
// each call, so a changed configuration takes effect at once.
//
// Cost: a Redis decision is one round trip (about 0.1 ms on loopback), a
// Local one well under a microsecond. Lease connections, not messages: take
// a slot per SMTP connection and renew it every ttl/3 or so while it is
// open; ask AllowN for a connection's whole batch of messages at once.
package throttle
