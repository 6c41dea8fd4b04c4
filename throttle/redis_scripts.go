package throttle

import "github.com/redis/go-redis/v9"

// The Lua scripts of the Redis backend. Each touches one key, so each runs on
// one Redis Cluster slot. Times come from Redis TIME, in microseconds, so
// every node of the fleet uses one clock per key; numbers written back are
// formatted explicitly, because Lua's default %.14g would round a
// microsecond timestamp. Scripts that call TIME and then write need effects
// replication, the default since Redis 5; replicate_commands asks for it on
// older servers.

// scriptAllow is GCRA (gcraStep in backend.go), as go-redis/redis_rate does
// it. KEYS[1] holds the TAT. ARGV: interval µs (may be fractional), n,
// tolerance µs. Returns {1, 0} or {0, wait µs}.
var scriptAllow = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
if tat - now > tolerance then
  return {0, math.ceil(tat - now - tolerance)}
end
local new = tat + tonumber(ARGV[2]) * interval
redis.call('SET', KEYS[1], string.format('%.3f', new), 'PX', string.format('%d', math.ceil((new - now) / 1000) + 1))
return {1, 0}
`)

// scriptAcquire takes a slot of the lease semaphore KEYS[1], a sorted set of
// lease ids scored by expiry (DOMAIN.md §8). ARGV: limit, ttl µs, lease id.
// Returns 1 (taken) or 0 (full). The set itself expires with its last lease.
var scriptAcquire = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[3])
local want = math.ceil(ttl / 1000) + 1
if redis.call('PTTL', KEYS[1]) < want then redis.call('PEXPIRE', KEYS[1], string.format('%d', want)) end
return 1
`)

// scriptRenew extends lease ARGV[2] of KEYS[1] by ARGV[1] µs (ZADD XX).
// Returns 0 if the lease is gone or already expired.
var scriptRenew = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[1])
local s = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not s then return 0 end
if tonumber(s) <= now then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + ttl), ARGV[2])
local want = math.ceil(ttl / 1000) + 1
if redis.call('PTTL', KEYS[1]) < want then redis.call('PEXPIRE', KEYS[1], string.format('%d', want)) end
return 1
`)

// scriptSetState stores (or, for an empty ARGV[1], deletes) the state key
// KEYS[1], expiring at ARGV[2] (Unix ms; "0" never), then publishes ARGV[4]
// on channel ARGV[3]; one script, so the write and the news cannot part.
var scriptSetState = redis.NewScript(`
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
  if ARGV[2] ~= '0' then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`)

// scriptCounter adds ARGV[1] to KEYS[1]; a new counter expires ARGV[2] ms
// later ("0": never).
var scriptCounter = redis.NewScript(`
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '0' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
`)
