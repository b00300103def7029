-- ARGV: limit. Returns a flat list {id, payload, attempts, reason, ...}, oldest first.
reap(now_ms())
local out = {}
local ids = redis.call('LRANGE', K_DEAD, 0, tonumber(ARGV[1]) - 1)
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', K_ITEMS, id, id .. ':s', id .. ':x')
  if f[1] and f[2] then
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = parse_state(f[2])
    out[#out + 1] = f[3] or ''
  end
end
return out
