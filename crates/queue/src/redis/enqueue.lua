-- ARGV: fencing token ('' for none; then KEYS[11] is the fencing counter), count, then per item
-- id, payload, priority, idempotency key ('' for none), max_attempts, delay_ms.
-- Returns {-1, current token} when the fencing token is stale (nothing enqueued), else a flat
-- list {1, id} (created) or {0, existing id} (known idempotency key), one pair per item.
if ARGV[1] ~= '' then
  local current = tonumber(redis.call('GET', KEYS[11]) or '0')
  if current ~= tonumber(ARGV[1]) then return {-1, tostring(current)} end
end
local now = now_ms()
local out = {}
local woken = 0
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  local base = 3 + i * 6
  local id, payload, pri, key = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local max_attempts, delay = tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5])
  local existing = nil
  if key ~= '' then
    existing = redis.call('HGET', K_IDEM, key)
    if existing and redis.call('HEXISTS', K_ITEMS, existing) == 0 then existing = nil end
  end
  if existing then
    out[#out + 1] = 0
    out[#out + 1] = existing
  else
    local m = {a = 0, m = max_attempts, p = pri, r = now}
    if key ~= '' then
      m.k = key
      redis.call('HSET', K_IDEM, key, id)
    end
    if delay > 0 then
      redis.call('HSET', K_ITEMS, id, payload, id .. ':m', cjson.encode(m))
      redis.call('ZADD', K_DELAYED, now + delay, id)
    else
      redis.call('HSET', K_ITEMS, id, payload, id .. ':m', cjson.encode(m))
      redis.call('RPUSH', LANE[pri], id)
      woken = woken + 1
    end
    out[#out + 1] = 1
    out[#out + 1] = id
  end
end
notify(woken)
return out
