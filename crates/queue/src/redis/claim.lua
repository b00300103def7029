-- ARGV: token nonce, worker, max items, lease_ms, aging_ms (0: strict priorities).
-- Returns a flat list of claims {id, token, attempt, max_attempts, priority, payload, ...}, or
-- the ms until the next delayed item or lease comes due (-1 when there is none).
local now = now_ms()
reap(now)
return claim_items(now, ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[1], tonumber(ARGV[5]))
