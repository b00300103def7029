-- ARGV: id, token, retry_after_ms.
-- Returns 1 when requeued, 2 when dead-lettered, 0 when the lease is no longer held.
local now = now_ms()
local id, retry_after = ARGV[1], tonumber(ARGV[3])
local m = held(now, id, ARGV[2])
if not m then return 0 end
redis.call('ZREM', K_INFLIGHT, id)
if m.a >= m.max then
  dead_letter(id, m, 'nacked')
  return 2
end
if retry_after > 0 then
  redis.call('HSET', K_ITEMS, id .. ':s', state(m.a, m.r))
  redis.call('ZADD', K_DELAYED, now + retry_after, id)
else
  redis.call('HSET', K_ITEMS, id .. ':s', state(m.a, now))
  redis.call('RPUSH', LANE[m.p], id)
  notify(1)
end
return 1
