package suppress

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis layout, for a prefix P:
//
//	P:{g}:h, P:{s=NAME}:h   hash per scope: address → record (JSON)
//	P:{g}:x, P:{s=NAME}:x   sorted set per scope: address → expiry (Unix ms)
//	P:scopes                set of the scope names in use
//	P:events                pub/sub channel of adds and removes
//
// A scope's hash and sorted set share a hash tag, so that the scripts below
// touch one Cluster slot; different scopes spread over the cluster.

func checkPrefix(p string) error {
	if p == "" || len(p) > 64 || !printable(p) || strings.ContainsAny(p, " \t{}") {
		return fmt.Errorf("suppress: bad redis key prefix %q", clip(p))
	}
	return nil
}

func tag(scope string) string {
	if scope == "" {
		return "g"
	}
	return "s=" + scope
}

func (r *Redis) hkey(scope string) string { return r.prefix + ":{" + tag(scope) + "}:h" }
func (r *Redis) xkey(scope string) string { return r.prefix + ":{" + tag(scope) + "}:x" }

// scriptAdd stores an entry, keeps its expiry in the sorted set and
// publishes the event in one atomic step, so no node can see the entry in
// Redis without the event being on its way.
// KEYS: hash, zset. ARGV: addr, record, expiry ms or "0", channel, event.
var scriptAdd = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '0' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`)

// scriptRemove deletes an entry and publishes the event if there was one.
// KEYS: hash, zset. ARGV: addr, channel, event.
var scriptRemove = redis.NewScript(`
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return n
`)

// scriptPurge deletes up to ARGV[2] entries whose expiry is at or before
// ARGV[1] (Unix ms) and returns how many. Caches need no event: they check
// the expiry on every read.
// KEYS: hash, zset.
var scriptPurge = redis.NewScript(`
local m = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, a in ipairs(m) do redis.call('HDEL', KEYS[1], a) end
if #m > 0 then redis.call('ZREM', KEYS[2], unpack(m)) end
return #m
`)

const (
	opAdd = "a"
	opDel = "d"
	// maxEvent bounds a pub/sub payload decodeEvent accepts.
	maxEvent = 8192
)

// event is what P:events carries.
type event struct {
	Op    string          `json:"o"`
	ID    string          `json:"i"` // the writer's operation id, for read-your-writes
	Scope string          `json:"s,omitempty"`
	Addr  string          `json:"k"`
	Rec   json.RawMessage `json:"v,omitempty"`
}

func encodeEvent(ev event) string {
	b, _ := json.Marshal(ev)
	return string(b)
}

// decodeEvent parses and validates an event; for an add it returns the entry.
func decodeEvent(payload string) (event, Entry, error) {
	var ev event
	if len(payload) > maxEvent {
		return ev, Entry{}, fmt.Errorf("event of %d bytes", len(payload))
	}
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		return ev, Entry{}, err
	}
	if err := checkScope(ev.Scope); err != nil {
		return ev, Entry{}, err
	}
	if a, err := Normalize(ev.Addr); err != nil || a != ev.Addr {
		return ev, Entry{}, fmt.Errorf("bad address %q", clip(ev.Addr))
	}
	switch ev.Op {
	case opDel:
		return ev, Entry{}, nil
	case opAdd:
		e, err := decodeRecord(ev.Scope, ev.Addr, ev.Rec)
		return ev, e, err
	}
	return ev, Entry{}, fmt.Errorf("unknown op %q", clip(ev.Op))
}
