-- Shared helpers, prepended to every queue script (see queue.rs).
-- ARGV[1] is always the key prefix; every key is built from it, so one prefix is one queue.
local P = ARGV[1]
local K_INFLIGHT = P .. 'work:inflight'
local K_DELAYED = P .. 'work:delayed'
local K_DEAD = P .. 'work:dead'
local K_IDEM = P .. 'work:idempotency'
local K_NOTIFY = P .. 'work:notify'
local REAP_BATCH = 100

local function item_key(id) return P .. 'work:item:' .. id end
local function queue_key(priority) return P .. 'work:queue:' .. priority end

-- Milliseconds since the epoch, from the server's clock (one clock for every client).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Wakes one blocked claimer (bounded, so an idle queue does not grow the list).
local function notify()
  redis.call('RPUSH', K_NOTIFY, 1)
  redis.call('LTRIM', K_NOTIFY, -64, -1)
end

local function dead_letter(id, reason)
  local ik = item_key(id)
  redis.call('HSET', ik, 'reason', reason)
  redis.call('HDEL', ik, 'token', 'worker')
  redis.call('RPUSH', K_DEAD, id)
end

-- Moves due delayed items to their lanes, and expired leases back (or to the dead letters
-- when their attempts are used up). Returns nothing; bounded per call.
local function reap(now)
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, REAP_BATCH)
  for _, id in ipairs(due) do
    redis.call('ZREM', K_DELAYED, id)
    local pri = redis.call('HGET', item_key(id), 'priority')
    if pri then
      redis.call('RPUSH', queue_key(pri), id)
      notify()
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', K_INFLIGHT, '-inf', now, 'LIMIT', 0, REAP_BATCH)
  for _, id in ipairs(expired) do
    redis.call('ZREM', K_INFLIGHT, id)
    local ik = item_key(id)
    local f = redis.call('HMGET', ik, 'priority', 'attempts', 'max_attempts')
    if f[1] then
      if tonumber(f[2]) >= tonumber(f[3]) then
        dead_letter(id, 'lease expired')
      else
        redis.call('HDEL', ik, 'token', 'worker')
        -- An expired item was claimed before anything still waiting: it goes first.
        redis.call('LPUSH', queue_key(f[1]), id)
        notify()
      end
    end
  end
end

-- Checks a lease token (ARGV[2] is the item id, ARGV[3] the token). A lease past its deadline
-- is not held, even before a reap returns it. Returns the item key and its fields
-- {token, priority, attempts, max_attempts, idem} when held, false when stale.
local function held(now)
  local id = ARGV[2]
  local deadline = redis.call('ZSCORE', K_INFLIGHT, id)
  if not deadline or tonumber(deadline) <= now then return false end
  local ik = item_key(id)
  local f = redis.call('HMGET', ik, 'token', 'priority', 'attempts', 'max_attempts', 'idem')
  if f[1] ~= ARGV[3] then return false end
  return ik, f
end
