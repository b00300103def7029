-- ARGV: count k, then k pairs (id, token), then for the claim that follows: token nonce, worker,
-- max items (0: ack only), lease_ms, aging_ms.
-- Returns {lost, claims}: lost is the list of positions (1-based) of pairs whose lease was no
-- longer held; claims as claim.lua (a flat list, or the ms until something comes due).
local now = now_ms()
local k = tonumber(ARGV[1])
local lost = {}
local done = {}
for i = 1, k do
  local id, token = ARGV[2 * i], ARGV[2 * i + 1]
  local m = held(now, id, token)
  if m then
    done[#done + 1] = id
    forget(id, m)
  else
    lost[#lost + 1] = i
  end
end
if #done > 0 then redis.call('ZREM', K_INFLIGHT, unpack(done)) end
local c = 2 * k + 2
local n = tonumber(ARGV[c + 2])
if n == 0 then return {lost, -1} end
reap(now)
return {lost, claim_items(now, ARGV[c + 1], n, tonumber(ARGV[c + 3]), ARGV[c], tonumber(ARGV[c + 4]))}
