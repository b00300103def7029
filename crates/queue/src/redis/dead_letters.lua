-- ARGV: prefix, limit. Returns a flat list {id, payload, attempts, reason, ...}, oldest first.
reap(now_ms())
local out = {}
local ids = redis.call('LRANGE', K_DEAD, 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', item_key(id), 'payload', 'attempts', 'reason')
  if f[1] then
    table.insert(out, id)
    table.insert(out, f[1])
    table.insert(out, tonumber(f[2]))
    table.insert(out, f[3] or '')
  end
end
return out
