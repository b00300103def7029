-- ARGV: prefix, id, token. Returns 1 when acked, 0 when the lease is no longer held.
local ik, f = held(now_ms())
if not ik then return 0 end
local key = f[5]
if key and key ~= '' and redis.call('HGET', K_IDEM, key) == ARGV[2] then
  redis.call('HDEL', K_IDEM, key)
end
redis.call('ZREM', K_INFLIGHT, ARGV[2])
redis.call('DEL', ik)
return 1
