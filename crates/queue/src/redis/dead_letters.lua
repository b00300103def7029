-- ARGV: limit. Returns a flat list {id, payload, attempts, reason, ...}, oldest first.
reap(now_ms())
local out = {}
local ids = redis.call('LRANGE', K_DEAD, 0, tonumber(ARGV[1]) - 1)
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', K_ITEMS, id, id .. ':m')
  if f[1] and f[2] then
    local m = cjson.decode(f[2])
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = m.a
    out[#out + 1] = m.x or ''
  end
end
return out
