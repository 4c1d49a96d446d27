-- Take back a purchase's coins after the provider refunded it or lost a dispute, once.
-- The balance may go negative: the coins were spent. Then the buyer's most recent gifts
-- not taken back by an earlier clawback, up to the coins spent, are queued for reversal of
-- the creator's still-pending diamonds (reverse_credit.lua, in each creator's slot).
-- Across several clawbacks of one buyer, the gifts taken back thus add up to the coins
-- spent, whichever purchase paid for which gift.
--
-- KEYS[1] - order hash                   ({u:B}:order:<order_id>)
-- KEYS[2] - wallet hash                  ({u:B}:wallet)
-- KEYS[3] - coin ledger stream           ({u:B}:ledger)
-- KEYS[4] - reversal queue hash          ({u:B}:reversals)
-- KEYS[5] - gifts already taken back     ({u:B}:clawed_gifts)
-- ARGV[1] - "refunded" or "charged_back"
-- ARGV[2] - provider payment id
-- ARGV[3] - now, unix milliseconds
-- ARGV[4] - order id
-- ARGV[5] - at most this many ledger entries are searched for the gifts to reverse
--
-- Returns one of:
--   {"ok", balance, coins_spent, gifts_queued}
--   {"already", state}           the order was refunded or charged back before
--   {"not_paid", state}          nothing was credited for this order
--   {"wrong_payment", payment}   the order was paid by another payment
--   {"unknown"}

local order = redis.call('HMGET', KEYS[1], 'state', 'payment_id', 'coins', 'ledger_id')
if not order[1] then
  return {'unknown'}
end
if order[1] == 'refunded' or order[1] == 'charged_back' then
  return {'already', order[1]}
end
if order[1] ~= 'paid' then
  return {'not_paid', order[1]}
end
if order[2] ~= ARGV[2] then
  return {'wrong_payment', order[2]}
end

local coins = tonumber(order[3])
local before = tonumber(redis.call('HGET', KEYS[2], 'coins') or '0')
local balance = redis.call('HINCRBY', KEYS[2], 'coins', -coins)
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'clawed_back_ms', ARGV[3])
redis.call('XADD', KEYS[3], '*', 'kind', 'clawback', 'delta', -coins, 'balance', balance,
  'ref', ARGV[4], 'reason', ARGV[1], 'payment_id', ARGV[2], 'ts', ARGV[3])

-- Coins of this purchase already spent: what the balance before could not cover.
local spent = coins - math.min(coins, math.max(before, 0))
local queued = 0
if spent > 0 then
  local gifts = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', tonumber(ARGV[5]))
  local covered = 0
  for _, entry in ipairs(gifts) do
    if covered >= spent then
      break
    end
    local f = {}
    for i = 1, #entry[2], 2 do
      f[entry[2][i]] = entry[2][i + 1]
    end
    if f['kind'] == 'gift' and f['creator_id'] and redis.call('SADD', KEYS[5], f['ref']) == 1 then
      redis.call('HSET', KEYS[4], f['ref'], f['creator_id'] .. '|' .. ARGV[4])
      covered = covered - tonumber(f['delta'])
      queued = queued + 1
    end
  end
end
return {'ok', tostring(balance), tostring(spent), tostring(queued)}
