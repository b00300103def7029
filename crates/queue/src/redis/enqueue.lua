-- ARGV: prefix, id, payload, priority, idempotency key ('' for none), max_attempts, delay_ms
-- Returns {1, id} when created, {0, existing id} for a known idempotency key.
local id, payload, pri, key = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local max_attempts, delay = tonumber(ARGV[6]), tonumber(ARGV[7])
if key ~= '' then
  local existing = redis.call('HGET', K_IDEM, key)
  if existing and redis.call('EXISTS', item_key(existing)) == 1 then
    return {0, existing}
  end
  redis.call('HSET', K_IDEM, key, id)
end
redis.call('HSET', item_key(id), 'payload', payload, 'priority', pri, 'attempts', 0,
  'max_attempts', max_attempts, 'idem', key)
if delay > 0 then
  redis.call('ZADD', K_DELAYED, now_ms() + delay, id)
else
  redis.call('RPUSH', queue_key(pri), id)
  notify()
end
return {1, id}
