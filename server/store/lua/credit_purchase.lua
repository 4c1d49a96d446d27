-- Credit a paid order's coins to its owner, exactly once, in the owner's slot.
--
-- KEYS[1] - order hash  ({u:U}:order:<order_id>)
-- KEYS[2] - wallet hash ({u:U}:wallet)
-- KEYS[3] - coin ledger ({u:U}:ledger)
-- KEYS[4] - the user's pending orders ({u:U}:orders:pending)
-- ARGV[1] - provider payment id
-- ARGV[2] - amount paid, minor units
-- ARGV[3] - currency paid (ISO 4217)
-- ARGV[4] - now, unix milliseconds
-- ARGV[5] - order id
-- ARGV[6] - the provider that took the payment (sandbox, stripe, apple)
-- ARGV[7] - this call's id (new to it), kept with the credit
--
-- Returns one of:
--   {"ok", balance, coins}          credited now (the coins the order bought), or by this very
--                                   call (ARGV[7]) sent again after its reply was lost: its first
--                                   answer
--   {"already", payment_id}         this order was paid before (by this or another payment)
--   {"mismatch"}                    amount or currency differs: order flagged, nothing credited
--   {"flagged", flag}               order was flagged before: nothing credited
--   {"wrong_provider", provider, ttl_ms}  the order is to be paid through `provider`: nothing
--                                   credited, the order untouched (it expires in ttl_ms, -1: never)
--   {"unknown"}                     no such order

local order_key = KEYS[1]
local wallet_key = KEYS[2]
local ledger_key = KEYS[3]
local pending_key = KEYS[4]
local payment_id = ARGV[1]
local amount_minor = ARGV[2]
local currency = ARGV[3]
local now = ARGV[4]
local order_id = ARGV[5]
local provider = ARGV[6]
local call_id = ARGV[7]

local order = redis.call('HMGET', order_key,
  'state', 'payment_id', 'amount_minor', 'currency', 'coins', 'provider')
if not order[1] then
  return {'unknown'}
end
-- An order is paid through the provider it was opened with; orders from before providers
-- were recorded are the sandbox's.
local opened_with = order[6] or 'sandbox'
if opened_with ~= provider then
  return {'wrong_provider', opened_with, redis.call('PTTL', order_key)}
end
-- A paid or flagged order is part of the books: it no longer expires as a pending one does.
redis.call('PERSIST', order_key)
redis.call('ZREM', pending_key, order_id)
if order[1] == 'paid' then
  local paid = redis.call('HMGET', order_key, 'credited_by', 'ledger_id')
  if paid[1] == call_id then
    local credited = redis.call('XRANGE', ledger_key, paid[2], paid[2])[1][2]
    for i = 1, #credited, 2 do
      if credited[i] == 'balance' then
        return {'ok', credited[i + 1], order[5]}
      end
    end
  end
  return {'already', order[2]}
end
if order[1] == 'refunded' or order[1] == 'charged_back' then
  return {'already', order[2]}
end
if order[1] == 'flagged' then
  return {'flagged', redis.call('HGET', order_key, 'flag') or ''}
end
if order[3] ~= amount_minor or order[4] ~= currency then
  redis.call('HSET', order_key, 'state', 'flagged', 'flag', 'amount_mismatch',
    'payment_id', payment_id, 'paid_amount_minor', amount_minor, 'paid_currency', currency,
    'flagged_ms', now)
  return {'mismatch'}
end
local coins = tonumber(order[5])
local balance = redis.call('HINCRBY', wallet_key, 'coins', coins)
local entry = redis.call('XADD', ledger_key, '*',
  'kind', 'purchase', 'delta', coins, 'balance', balance, 'ref', order_id,
  'payment_id', payment_id, 'ts', now)
redis.call('HSET', order_key, 'state', 'paid', 'payment_id', payment_id, 'paid_ms', now,
  'ledger_id', entry, 'credited_by', call_id)
return {'ok', tostring(balance), tostring(coins)}
