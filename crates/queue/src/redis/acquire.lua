-- KEYS: lease key, fencing counter key. ARGV: holder, ttl_ms.
-- Takes a free lease: returns the new fencing token, or false when the lease is held.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
