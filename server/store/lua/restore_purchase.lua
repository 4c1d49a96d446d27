-- Put back the coins of a purchase whose refund the provider reversed (the App Store's
-- REFUND_REVERSED), once per refund, in the buyer's slot. The order goes from refunded back
-- to paid; the gifts its clawback reversed stay reversed (docs/MONEY.md).
--
-- KEYS[1] - order hash   ({u:B}:order:<order_id>)
-- KEYS[2] - wallet hash  ({u:B}:wallet)
-- KEYS[3] - coin ledger  ({u:B}:ledger)
-- ARGV[1] - provider payment id
-- ARGV[2] - now, unix milliseconds
-- ARGV[3] - order id
-- ARGV[4] - a new id for this call: the same call run again (its reply lost) answers "ok"
--           with the balance its first run left, a redelivery "already"
--
-- Returns one of:
--   {"ok", balance, coins}       the coins are back
--   {"already"}                  the order is paid (never refunded, or restored before)
--   {"not_refunded", state}      the order is pending, flagged or charged back: nothing to restore
--   {"wrong_payment", payment}   the order was paid by another payment
--   {"unknown"}                  no such order

local order_key = KEYS[1]
local wallet_key = KEYS[2]
local ledger_key = KEYS[3]
local payment_id = ARGV[1]
local now = ARGV[2]
local order_id = ARGV[3]
local call_id = ARGV[4]

local order = redis.call('HMGET', order_key, 'state', 'payment_id', 'coins', 'restored_by', 'restored_balance')
if not order[1] then
  return {'unknown'}
end
if order[2] and order[2] ~= payment_id then
  return {'wrong_payment', order[2]}
end
if order[1] == 'paid' then
  if order[4] == call_id then
    return {'ok', order[5], order[3]}
  end
  return {'already'}
end
if order[1] ~= 'refunded' then
  return {'not_refunded', order[1]}
end
local coins = tonumber(order[3])
local balance = redis.call('HINCRBY', wallet_key, 'coins', coins)
redis.call('XADD', ledger_key, '*', 'kind', 'restore', 'delta', coins, 'balance', balance,
  'ref', order_id, 'payment_id', payment_id, 'ts', now)
redis.call('HSET', order_key, 'state', 'paid', 'restored_ms', now, 'restored_by', call_id,
  'restored_balance', balance)
return {'ok', tostring(balance), tostring(coins)}
