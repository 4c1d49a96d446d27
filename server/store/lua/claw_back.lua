-- Take back a purchase's coins after the provider refunded it or lost a dispute, once.
-- The balance may go negative: the coins were spent. Then the buyer's most recent gifts
-- not taken back by an earlier clawback, up to the coins spent, are queued for reversal of
-- the creator's still-pending diamonds (reverse_credit.lua, in each creator's slot).
-- Across several clawbacks of one buyer, the gifts taken back thus add up to the coins
-- spent, whichever purchase paid for which gift.
--
-- The gifts come from KEYS[5], which gift_debit.lua pushes each gift on, newest first; a
-- gift taken is popped, so no later clawback takes it again. The search costs one step per
-- gift taken, however many gifts or other entries the ledger holds. It stops at the first
-- gift older than ARGV[5]: gifts that old have left the diamond hold.
--
-- KEYS[1] - order hash                   ({u:B}:order:<order_id>)
-- KEYS[2] - wallet hash                  ({u:B}:wallet)
-- KEYS[3] - coin ledger stream           ({u:B}:ledger)
-- KEYS[4] - reversal queue hash          ({u:B}:reversals)
-- KEYS[5] - gifts a clawback can take    ({u:B}:clawable), "ts|cost|creator|event", newest first
-- ARGV[1] - "refunded" or "charged_back"
-- ARGV[2] - provider payment id
-- ARGV[3] - now, unix milliseconds
-- ARGV[4] - order id
-- ARGV[5] - the clawback window, milliseconds: only gifts this recent are taken
-- ARGV[6] - a new id for this call: the same call run again (its reply lost) answers "ok"
--           with what its first run did, a redelivery of the refund "already"
--
-- Returns one of:
--   {"ok", balance, coins_spent, gifts_queued}
--   {"already", state}           the order was refunded or charged back before
--   {"not_paid", state}          nothing was credited for this order
--   {"wrong_payment", payment}   the order was paid by another payment
--   {"unknown"}

local order_key = KEYS[1]
local wallet_key = KEYS[2]
local ledger_key = KEYS[3]
local reversals_key = KEYS[4]
local clawable_key = KEYS[5]
local reason = ARGV[1]
local payment_id = ARGV[2]
local now = ARGV[3]
local order_id = ARGV[4]
local window_ms = tonumber(ARGV[5])
local call_id = ARGV[6]

local order = redis.call('HMGET', order_key, 'state', 'payment_id', 'coins', 'clawed_by', 'clawback')
if not order[1] then
  return {'unknown'}
end
if order[1] == 'refunded' or order[1] == 'charged_back' then
  if order[4] == call_id then
    local balance, spent, queued = string.match(order[5], '^(-?%d+)|(%d+)|(%d+)$')
    return {'ok', balance, spent, queued}
  end
  return {'already', order[1]}
end
if order[1] ~= 'paid' then
  return {'not_paid', order[1]}
end
if order[2] ~= payment_id then
  return {'wrong_payment', order[2]}
end

local coins = tonumber(order[3])
local before = tonumber(redis.call('HGET', wallet_key, 'coins') or '0')
local balance = redis.call('HINCRBY', wallet_key, 'coins', -coins)
redis.call('HSET', order_key, 'state', reason, 'clawed_back_ms', now)
redis.call('XADD', ledger_key, '*', 'kind', 'clawback', 'delta', -coins, 'balance', balance,
  'ref', order_id, 'reason', reason, 'payment_id', payment_id, 'ts', now)

-- Coins of this purchase already spent: what the balance before could not cover.
local spent = coins - math.min(coins, math.max(before, 0))
local queued = 0
if spent > 0 then
  local horizon = tonumber(now) - window_ms
  local covered = 0
  local searching = true
  while searching do
    local page = redis.call('LRANGE', clawable_key, 0, 99)
    local taken = 0
    for _, record in ipairs(page) do
      local ts, cost, creator, event = string.match(record, '^(%d+)|(%d+)|([^|]+)|(.+)$')
      if covered >= spent or tonumber(ts) < horizon then
        searching = false
        break
      end
      redis.call('HSET', reversals_key, event, creator .. '|' .. order_id)
      covered = covered + tonumber(cost)
      taken = taken + 1
    end
    if taken > 0 then
      redis.call('LTRIM', clawable_key, taken, -1)
    end
    if #page < 100 then
      searching = false
    end
    queued = queued + taken
  end
end
redis.call('HSET', order_key, 'clawed_by', call_id, 'clawback', balance .. '|' .. spent .. '|' .. queued)
return {'ok', tostring(balance), tostring(spent), tostring(queued)}
