-- Shared helpers, prepended to every queue script (see queue.rs).
-- Every key is declared, in the same order for every script (Redis Cluster: one hash tag per
-- queue puts them all in one slot; no key name is built inside a script):
--   KEYS[1..3] lanes high, normal, low (lists of ids)   KEYS[4] inflight (zset id -> deadline)
--   KEYS[5] delayed (zset id -> due)   KEYS[6] dead (list)   KEYS[7] idempotency (hash key -> id)
--   KEYS[8] notify (list)   KEYS[9] items (hash, fields below)
--   KEYS[10] consumers (hash worker -> last fetch ms)   [KEYS[11] fencing counter, enqueue only]
-- Item fields in KEYS[9]: `<id>` payload; `<id>:m` "max_attempts|priority|idempotency key"
-- (fixed at enqueue); `<id>:s` "attempts|ready since ms|lease token|worker" (token and worker
-- empty unless leased); `<id>:x` dead-letter reason. Plain strings, not JSON: cheaper to parse.
local LANE = {high = KEYS[1], normal = KEYS[2], low = KEYS[3]}
local PRIS = {'high', 'normal', 'low'}
local K_INFLIGHT, K_DELAYED, K_DEAD, K_IDEM = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local K_NOTIFY, K_ITEMS, K_CONSUMERS = KEYS[8], KEYS[9], KEYS[10]
local REAP_BATCH = 100
local MAX_NOTIFY = 64

-- Milliseconds since the epoch, from the server's clock (one clock for every client).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- max_attempts, priority, idempotency key ('' for none) from an `<id>:m` field.
local function parse_fixed(m)
  local max, pri, key = string.match(m, '^(%d+)|(%a+)|(.*)$')
  return tonumber(max), pri, key
end

-- attempts, ready since, token, worker from an `<id>:s` field.
local function parse_state(s)
  local a, r, t, w = string.match(s, '^(%d+)|(%d*)|([^|]*)|(.*)$')
  return tonumber(a), tonumber(r) or 0, t, w
end

local function state(a, r, t, w)
  return a .. '|' .. r .. '|' .. (t or '') .. '|' .. (w or '')
end

-- The item's fixed fields and state, or nil when it is gone:
-- {max, priority, key, attempts, ready, token, worker}.
local function item(id)
  local f = redis.call('HMGET', K_ITEMS, id .. ':m', id .. ':s')
  if not (f[1] and f[2]) then return nil end
  local max, pri, key = parse_fixed(f[1])
  local a, r, t, w = parse_state(f[2])
  return {max = max, p = pri, k = key, a = a, r = r, t = t, w = w}
end

-- Wakes up to `n` blocked claimers (bounded, so an idle queue does not grow the list).
local function notify(n)
  if n <= 0 then return end
  if n > MAX_NOTIFY then n = MAX_NOTIFY end
  local ones = {}
  for i = 1, n do ones[i] = 1 end
  if redis.call('RPUSH', K_NOTIFY, unpack(ones)) > MAX_NOTIFY then
    redis.call('LTRIM', K_NOTIFY, -MAX_NOTIFY, -1)
  end
end

-- Dead-letters `id`; past DEAD_LIMIT (set in front of every script) the oldest dead letter is
-- dropped with its fields and idempotency key.
local function dead_letter(id, m, reason)
  redis.call('HSET', K_ITEMS, id .. ':s', state(m.a, m.r), id .. ':x', reason)
  local len = redis.call('RPUSH', K_DEAD, id)
  while len > DEAD_LIMIT do
    local old = redis.call('LPOP', K_DEAD)
    if not old then break end
    local f = redis.call('HGET', K_ITEMS, old .. ':m')
    if f then
      local _, _, key = parse_fixed(f)
      if key ~= '' and redis.call('HGET', K_IDEM, key) == old then
        redis.call('HDEL', K_IDEM, key)
      end
    end
    redis.call('HDEL', K_ITEMS, old, old .. ':m', old .. ':s', old .. ':x')
    len = len - 1
  end
end

-- Moves due delayed items to their lanes, and expired leases back (or to the dead letters when
-- their attempts are used up). Bounded per call.
local function reap(now)
  local woken = 0
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, REAP_BATCH)
  if #due > 0 then
    redis.call('ZREM', K_DELAYED, unpack(due))
    for _, id in ipairs(due) do
      local m = item(id)
      if m then
        redis.call('HSET', K_ITEMS, id .. ':s', state(m.a, now))
        redis.call('RPUSH', LANE[m.p], id)
        woken = woken + 1
      end
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', K_INFLIGHT, '-inf', now, 'LIMIT', 0, REAP_BATCH)
  if #expired > 0 then
    redis.call('ZREM', K_INFLIGHT, unpack(expired))
    for _, id in ipairs(expired) do
      local m = item(id)
      if m then
        if m.a >= m.max then
          dead_letter(id, m, 'lease expired')
        else
          redis.call('HSET', K_ITEMS, id .. ':s', state(m.a, now))
          -- An expired item was claimed before anything still waiting: it goes first.
          redis.call('LPUSH', LANE[m.p], id)
          woken = woken + 1
        end
      end
    end
  end
  notify(woken)
end

-- The item (see `item`) if `token` still holds its lease, else nil. A lease past its deadline is
-- not held, even before a reap returns it.
local function held(now, id, token)
  local deadline = redis.call('ZSCORE', K_INFLIGHT, id)
  if not deadline or tonumber(deadline) <= now then return nil end
  local m = item(id)
  if not m or m.t ~= token then return nil end
  return m
end

-- Removes an acked item for good (the caller removed it from inflight).
local function forget(id, m)
  redis.call('HDEL', K_ITEMS, id, id .. ':m', id .. ':s', id .. ':x')
  if m.k ~= '' and redis.call('HGET', K_IDEM, m.k) == id then
    redis.call('HDEL', K_IDEM, m.k)
  end
end

-- Pops up to `n` ready ids: strictly by lane, or with `aging` ms > 0 by ready time plus `aging`
-- per lane below high (ties to the higher lane).
local function pop_ready(n, aging)
  local out = {}
  if aging <= 0 then
    for _, pri in ipairs(PRIS) do
      local want = n - #out
      if want <= 0 then break end
      local ids = redis.call('LPOP', LANE[pri], want)
      if ids then
        for _, id in ipairs(ids) do out[#out + 1] = id end
      end
    end
    return out
  end
  local heads = {}
  local function head(i)
    local id = redis.call('LINDEX', LANE[PRIS[i]], 0)
    if not id then return false end
    local s = redis.call('HGET', K_ITEMS, id .. ':s')
    local r = 0
    if s then
      local _
      _, r = parse_state(s)
    end
    return r + aging * (i - 1)
  end
  for i = 1, 3 do heads[i] = head(i) end
  while #out < n do
    local best = nil
    for i = 1, 3 do
      if heads[i] and (not best or heads[i] < heads[best]) then best = i end
    end
    if not best then break end
    out[#out + 1] = redis.call('LPOP', LANE[PRIS[best]])
    heads[best] = head(best)
  end
  return out
end

-- Claims up to `n` items for `worker`: a flat list {id, token, attempt, max, priority, payload,
-- ...}, or when nothing is ready the ms until the next delayed item or lease comes due (-1: none).
-- Records the fetch in the consumers hash either way.
local function claim_items(now, worker, n, lease, nonce, aging)
  redis.call('HSET', K_CONSUMERS, worker, now)
  local out = {}
  local zadd = {}
  if n > 0 then
    local ids = pop_ready(n, aging)
    local deadline = now + lease
    for _, id in ipairs(ids) do
      local f = redis.call('HMGET', K_ITEMS, id, id .. ':m', id .. ':s')
      if f[1] and f[2] and f[3] then
        local max, pri = parse_fixed(f[2])
        local a, r = parse_state(f[3])
        local token = id .. '.' .. nonce
        a = a + 1
        redis.call('HSET', K_ITEMS, id .. ':s', state(a, r, token, worker))
        zadd[#zadd + 1] = deadline
        zadd[#zadd + 1] = id
        local o = #out
        out[o + 1] = id
        out[o + 2] = token
        out[o + 3] = a
        out[o + 4] = max
        out[o + 5] = pri
        out[o + 6] = f[1]
      end
    end
  end
  if #zadd > 0 then
    redis.call('ZADD', K_INFLIGHT, unpack(zadd))
    return out
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
end
