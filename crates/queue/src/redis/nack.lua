-- ARGV: prefix, id, token, retry_after_ms.
-- Returns 1 when requeued, 2 when dead-lettered, 0 when the lease is no longer held.
local now = now_ms()
local ik, f = held(now)
if not ik then return 0 end
local id, retry_after = ARGV[2], tonumber(ARGV[4])
redis.call('ZREM', K_INFLIGHT, id)
if tonumber(f[3]) >= tonumber(f[4]) then
  dead_letter(id, 'nacked')
  return 2
end
redis.call('HDEL', ik, 'token', 'worker')
if retry_after > 0 then
  redis.call('ZADD', K_DELAYED, now + retry_after, id)
else
  redis.call('RPUSH', queue_key(f[2]), id)
  notify()
end
return 1
