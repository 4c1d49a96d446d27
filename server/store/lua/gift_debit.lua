-- Debit a gift from the sender's wallet: the hot path, atomic in the sender's slot.
--
-- KEYS[1] - wallet hash of the sender       ({u:S}:wallet)
-- KEYS[2] - coin ledger stream of the sender ({u:S}:ledger)
-- KEYS[3] - idempotency hash for this key    ({u:S}:idem:<key>)
-- KEYS[4] - outbox hash of the sender        ({u:S}:outbox)
-- KEYS[5] - gift rate token bucket hash     ({u:S}:rate)
-- KEYS[6] - gifts a clawback can take back  ({u:S}:clawable)
-- ARGV[1] - cost in coins (positive integer)
-- ARGV[2] - fingerprint of the request the idempotency key is bound to
-- ARGV[3] - gift event id to use if this is a new gift
-- ARGV[4] - now, unix milliseconds
-- ARGV[5] - UTC day number the daily budget counts against
-- ARGV[6] - idempotency record lifetime, seconds
-- ARGV[7] - room id
-- ARGV[8] - gift id
-- ARGV[9] - count
-- ARGV[10] - outbox entry (JSON) for the creator credit and the room event
-- ARGV[11] - gift rate: tokens added per second
-- ARGV[12] - gift burst: bucket capacity
-- ARGV[13] - creator id (recorded in the ledger entry, for reversals after a chargeback)
-- ARGV[14] - how long KEYS[6] keeps a gift, milliseconds (past the clawback window)
--
-- Returns one of:
--   {"ok", event_id, balance, spent_today}    debited now
--   {"replay", event_id, balance, cost}       same key and same request: the first answer
--   {"mismatch"}                              same key, different request: nothing done
--   {"insufficient", balance}                 not enough coins: nothing done
--   {"limit", spent_today, daily_limit}       daily budget would be exceeded: nothing done
--   {"rate", retry_after_ms}                  over the gift rate: nothing done
--   {"frozen"}                                the account is frozen: nothing done
--   {"negative", balance}                     the balance is below zero after a clawback
--
-- A replay is answered before the rate check, so retrying never costs a token. The bucket
-- refills continuously at ARGV[11] per second up to ARGV[12]; each new gift takes one token.
--
-- Each gift is pushed on KEYS[6], newest first, as "ts|cost|creator|event"; claw_back.lua
-- pops from that end. Each debit also drops up to two gifts older than ARGV[14] from the far
-- end (more than it adds), and the list expires ARGV[14] after the last gift, so it never
-- holds more than the gifts of two such spans.

local seen = redis.call('HMGET', KEYS[3], 'fp', 'event_id', 'coins', 'cost')
if seen[1] then
  if seen[1] == ARGV[2] then
    return {'replay', seen[2], seen[3], seen[4]}
  end
  return {'mismatch'}
end

if redis.call('HGET', KEYS[1], 'frozen') == '1' then
  return {'frozen'}
end

local now = tonumber(ARGV[4])
local rate = tonumber(ARGV[11])
local burst = tonumber(ARGV[12])
local bucket = redis.call('HMGET', KEYS[5], 'tokens', 'ts')
local tokens = burst
if bucket[1] then
  local elapsed = math.max(0, now - tonumber(bucket[2]))
  tokens = math.min(burst, tonumber(bucket[1]) + elapsed * rate / 1000)
end
if tokens < 1 then
  return {'rate', tostring(math.ceil((1 - tokens) * 1000 / rate))}
end

local cost = tonumber(ARGV[1])
local wallet = redis.call('HMGET', KEYS[1], 'coins', 'daily_limit', 'spent_day', 'spent')
local coins = tonumber(wallet[1] or '0')
if coins < 0 then
  return {'negative', tostring(coins)}
end
if coins < cost then
  return {'insufficient', tostring(coins)}
end

local spent = 0
if wallet[3] == ARGV[5] then
  spent = tonumber(wallet[4] or '0')
end
if wallet[2] and spent + cost > tonumber(wallet[2]) then
  return {'limit', tostring(spent), wallet[2]}
end

local balance = redis.call('HINCRBY', KEYS[1], 'coins', -cost)
spent = spent + cost
redis.call('HSET', KEYS[1], 'spent_day', ARGV[5], 'spent', spent)
redis.call('XADD', KEYS[2], '*',
  'kind', 'gift', 'delta', -cost, 'balance', balance, 'ref', ARGV[3],
  'room_id', ARGV[7], 'gift_id', ARGV[8], 'count', ARGV[9], 'creator_id', ARGV[13], 'ts', ARGV[4])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[10])
redis.call('LPUSH', KEYS[6], ARGV[4] .. '|' .. ARGV[1] .. '|' .. ARGV[13] .. '|' .. ARGV[3])
local keep = tonumber(ARGV[14])
for _ = 1, 2 do
  local oldest = redis.call('LINDEX', KEYS[6], -1)
  if tonumber(string.match(oldest, '^(%d+)|')) >= now - keep then
    break
  end
  redis.call('RPOP', KEYS[6])
end
redis.call('PEXPIRE', KEYS[6], keep)
redis.call('HSET', KEYS[5], 'tokens', tostring(tokens - 1), 'ts', ARGV[4])
redis.call('PEXPIRE', KEYS[5], math.ceil(burst * 1000 / rate) + 1000)
redis.call('HSET', KEYS[3], 'fp', ARGV[2], 'event_id', ARGV[3], 'coins', balance, 'cost', cost)
redis.call('EXPIRE', KEYS[3], ARGV[6])
return {'ok', ARGV[3], tostring(balance), tostring(spent)}
