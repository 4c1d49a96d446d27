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
--
-- Returns one of:
--   {"ok", balance, coins}          credited now (the coins the order bought)
--   {"already", payment_id}         this order was paid before (by this or another payment)
--   {"mismatch"}                    amount or currency differs: order flagged, nothing credited
--   {"flagged", flag}               order was flagged before: nothing credited
--   {"unknown"}                     no such order

local order = redis.call('HMGET', KEYS[1], 'state', 'payment_id', 'amount_minor', 'currency', 'coins')
if not order[1] then
  return {'unknown'}
end
-- A paid or flagged order is part of the books: it no longer expires as a pending one does.
redis.call('PERSIST', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[5])
if order[1] == 'paid' then
  return {'already', order[2]}
end
if order[1] == 'refunded' or order[1] == 'charged_back' then
  return {'already', order[2]}
end
if order[1] == 'flagged' then
  return {'flagged', redis.call('HGET', KEYS[1], 'flag') or ''}
end
if order[3] ~= ARGV[2] or order[4] ~= ARGV[3] then
  redis.call('HSET', KEYS[1], 'state', 'flagged', 'flag', 'amount_mismatch',
    'payment_id', ARGV[1], 'paid_amount_minor', ARGV[2], 'paid_currency', ARGV[3],
    'flagged_ms', ARGV[4])
  return {'mismatch'}
end
local coins = tonumber(order[5])
local balance = redis.call('HINCRBY', KEYS[2], 'coins', coins)
local entry = redis.call('XADD', KEYS[3], '*',
  'kind', 'purchase', 'delta', coins, 'balance', balance, 'ref', ARGV[5],
  'payment_id', ARGV[1], 'ts', ARGV[4])
redis.call('HSET', KEYS[1], 'state', 'paid', 'payment_id', ARGV[1], 'paid_ms', ARGV[4],
  'ledger_id', entry)
return {'ok', tostring(balance), tostring(coins)}
