-- ARGV: id, token, retry_after_ms.
-- Returns 1 when requeued, 2 when dead-lettered, 0 when the lease is no longer held.
local now = now_ms()
local id, retry_after = ARGV[1], tonumber(ARGV[3])
local m = held(now, id, ARGV[2])
if not m then return 0 end
redis.call('ZREM', K_INFLIGHT, id)
if m.a >= m.m then
  dead_letter(id, m, 'nacked')
  return 2
end
m.t = nil
m.w = nil
if retry_after > 0 then
  set_meta(id, m)
  redis.call('ZADD', K_DELAYED, now + retry_after, id)
else
  m.r = now
  set_meta(id, m)
  redis.call('RPUSH', LANE[m.p], id)
  notify(1)
end
return 1
