-- ARGV: prefix, token nonce, worker, lease_ms
-- Returns {id, token, attempt, max_attempts, priority, payload} for a claim, or the number of
-- milliseconds until the next delayed item or lease comes due (-1 when there is none).
local nonce, worker, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
reap(now)
for _, pri in ipairs({'high', 'normal', 'low'}) do
  local id = redis.call('LPOP', queue_key(pri))
  while id do
    local ik = item_key(id)
    local f = redis.call('HMGET', ik, 'attempts', 'max_attempts', 'payload')
    if f[3] then
      local token = id .. '.' .. nonce
      local attempt = tonumber(f[1]) + 1
      redis.call('HSET', ik, 'attempts', attempt, 'token', token, 'worker', worker)
      redis.call('ZADD', K_INFLIGHT, now + lease, id)
      return {id, token, attempt, tonumber(f[2]), pri, f[3]}
    end
    id = redis.call('LPOP', queue_key(pri))
  end
end
local next_due = -1
for _, z in ipairs({K_DELAYED, K_INFLIGHT}) do
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if first[2] then
    local wait = math.max(0, tonumber(first[2]) - now)
    if next_due < 0 or wait < next_due then next_due = wait end
  end
end
return next_due
