-- ARGV: prefix, id, token, by_ms. Returns 1 when extended, 0 when the lease is no longer held.
local now = now_ms()
if not held(now) then return 0 end
redis.call('ZADD', K_INFLIGHT, 'XX', now + tonumber(ARGV[4]), ARGV[2])
return 1
