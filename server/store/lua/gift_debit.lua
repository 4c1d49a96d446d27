-- Debit a gift from the sender's wallet: the hot path, atomic in the sender's slot.
--
-- KEYS[1] - wallet hash of the sender       ({u:S}:wallet)
-- KEYS[2] - coin ledger stream of the sender ({u:S}:ledger)
-- KEYS[3] - idempotency hash for this key    ({u:S}:idem:<key>)
-- KEYS[4] - outbox hash of the sender        ({u:S}:outbox)
-- KEYS[5] - gift rate token bucket hash     ({u:S}:rate)
-- KEYS[6] - gifts a clawback can take back  ({u:S}:clawable)
-- KEYS[7] - creators who banned the sender   ({u:S}:banned_by)
-- ARGV[1] - cost in coins (positive integer)
-- ARGV[2] - fingerprint of the request the idempotency key is bound to
-- ARGV[3] - gift event id to use if this is a new gift
-- ARGV[4] - now, unix milliseconds: the gift's time (ledger entry, clawable list)
-- ARGV[5] - UTC day number the daily budget counts against
-- ARGV[6] - idempotency record lifetime, seconds
-- ARGV[7] - room id ("" for a gift on a video)
-- ARGV[8] - gift id
-- ARGV[9] - count
-- ARGV[10] - outbox entry (JSON object) for the creator credit and the room event, with the
--            diamonds and the creator share the gift was priced with; the debit adds its own
--            time to it as "debit_ms" (the engine ms of its ledger entry's id)
-- ARGV[11] - gift rate: tokens added per second
-- ARGV[12] - gift burst: bucket capacity
-- ARGV[13] - creator id (recorded in the ledger entry, for reversals after a chargeback)
-- ARGV[14] - how long KEYS[6] keeps a gift, milliseconds (past the clawback window)
-- ARGV[15] - video id of a gift on a video, else "" (the ledger entry names it only if set)
--
-- Returns one of:
--   {"ok", event_id, balance, spent_today, debit_ms}    debited now
--   {"replay", event_id, balance, cost, debit_ms}  same key and same request: the first answer
--   {"mismatch"}                              same key, different request: nothing done
--   {"insufficient", balance}                 not enough coins: nothing done
--   {"limit", spent_today, daily_limit}       daily budget would be exceeded: nothing done
--   {"rate", retry_after_ms}                  over the gift rate: nothing done
--   {"frozen"}                                the account is frozen: nothing done
--   {"banned"}                                the creator (ARGV[13]) banned the sender: nothing done
--   {"negative", balance}                     the balance is below zero after a clawback
--
-- A replay is answered before the ban and the rate check: a gift accepted before a ban gets its
-- first answer again. The ban is read here, in the sender's slot, rather than beside the room
-- check: a ban made before the debit refuses the gift, with no read of its own on the gift path.
-- A replay is answered before the rate check, so retrying never costs a token. The bucket
-- refills continuously at ARGV[11] per second up to ARGV[12]; each new gift takes one token.
-- It is _token_bucket.lua's, timed by the engine's clock, not ARGV[4]: every process that
-- debits this sender reads the one clock of the sender's slot, whatever its own says.
--
-- Each gift is pushed on KEYS[6], newest first, as "ts|cost|creator|event"; claw_back.lua
-- pops from that end. Each debit also drops up to two gifts older than ARGV[14] from the far
-- end (more than it adds), and the list expires ARGV[14] after the last gift, so it never
-- holds more than the gifts of two such spans.

local wallet_key = KEYS[1]
local ledger_key = KEYS[2]
local idem_key = KEYS[3]
local outbox_key = KEYS[4]
local rate_key = KEYS[5]
local clawable_key = KEYS[6]
local banned_by_key = KEYS[7]
local cost = tonumber(ARGV[1])
local fingerprint = ARGV[2]
local event_id = ARGV[3]
local now = ARGV[4]
local day = ARGV[5]
local idempotency_ttl_s = ARGV[6]
local room_id = ARGV[7]
local gift_id = ARGV[8]
local count = ARGV[9]
local outbox_entry = ARGV[10]
local rate = tonumber(ARGV[11])
local burst = tonumber(ARGV[12])
local creator_id = ARGV[13]
local keep_ms = tonumber(ARGV[14])
local video_id = ARGV[15]

--#include _token_bucket

local seen = redis.call('HMGET', idem_key, 'fp', 'event_id', 'coins', 'cost')
if seen[1] then
  if seen[1] == fingerprint then
    return {'replay', seen[2], seen[3], seen[4], redis.call('HGET', idem_key, 'debit_ms')}
  end
  return {'mismatch'}
end

-- One read of the wallet for every check below (the frozen flag first).
local wallet = redis.call('HMGET', wallet_key, 'coins', 'daily_limit', 'spent_day', 'spent', 'frozen')
if wallet[5] == '1' then
  return {'frozen'}
end

if redis.call('SISMEMBER', banned_by_key, creator_id) == 1 then
  return {'banned'}
end

local tokens, bucket_now = bucket_read(rate_key, rate, burst)
if tokens < 1 then
  return {'rate', tostring(bucket_retry_ms(tokens, rate))}
end

local coins = tonumber(wallet[1] or '0')
if coins < 0 then
  return {'negative', tostring(coins)}
end
if coins < cost then
  return {'insufficient', tostring(coins)}
end

local spent = 0
if wallet[3] == day then
  spent = tonumber(wallet[4] or '0')
end
if wallet[2] and spent + cost > tonumber(wallet[2]) then
  return {'limit', tostring(spent), wallet[2]}
end

local balance = redis.call('HINCRBY', wallet_key, 'coins', -cost)
spent = spent + cost
redis.call('HSET', wallet_key, 'spent_day', day, 'spent', spent)
local video_field = {}
if video_id ~= '' then
  video_field = {'video_id', video_id}
end
local entry_id = redis.call('XADD', ledger_key, '*',
  'kind', 'gift', 'delta', -cost, 'balance', balance, 'ref', event_id,
  'room_id', room_id, 'gift_id', gift_id, 'count', count, 'creator_id', creator_id, 'ts', now,
  unpack(video_field))
-- The debit's time, by the one clock every reader of this ledger sees: what decides whether
-- the gift counts in a battle (battle_score.lua), and what the audit checks that by.
local debit_ms = string.match(entry_id, '^(%d+)')
redis.call('HSET', outbox_key, event_id,
  string.sub(outbox_entry, 1, -2) .. ',"debit_ms":' .. debit_ms .. '}')
redis.call('LPUSH', clawable_key, now .. '|' .. cost .. '|' .. creator_id .. '|' .. event_id)
for _ = 1, 2 do
  local oldest = redis.call('LINDEX', clawable_key, -1)
  if tonumber(string.match(oldest, '^(%d+)|')) >= tonumber(now) - keep_ms then
    break
  end
  redis.call('RPOP', clawable_key)
end
redis.call('PEXPIRE', clawable_key, keep_ms)
bucket_take(rate_key, tokens, bucket_now, rate, burst)
redis.call('HSET', idem_key,
  'fp', fingerprint, 'event_id', event_id, 'coins', balance, 'cost', cost, 'debit_ms', debit_ms)
redis.call('EXPIRE', idem_key, idempotency_ttl_s)
return {'ok', event_id, tostring(balance), tostring(spent), debit_ms}
