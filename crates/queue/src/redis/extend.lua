-- ARGV: id, token, by_ms. Returns 1 when extended, 0 when the lease is no longer held.
local now = now_ms()
if not held(now, ARGV[1], ARGV[2]) then return 0 end
redis.call('ZADD', K_INFLIGHT, 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
