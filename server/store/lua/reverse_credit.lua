-- Take back a gift's diamonds from a creator after the coins that paid for it were clawed
-- back (refund or chargeback), if they are still pending. At most once per gift event.
--
-- KEYS[1] - set of reversed gift event ids         ({u:C}:reversed)
-- KEYS[2] - earnings hash                          ({u:C}:earnings)
-- KEYS[3] - diamond ledger stream                  ({u:C}:earnings:ledger)
-- KEYS[4] - holds zset                             ({u:C}:holds)
-- KEYS[5] - held diamonds hash                     ({u:C}:held)
-- KEYS[6] - set of credited gift event ids         ({u:C}:credited)
-- ARGV[1] - gift event id
-- ARGV[2] - order id of the purchase clawed back
-- ARGV[3] - now, unix milliseconds
--
-- Returns {"reversed", diamonds}; {"blocked"} for a gift whose credit has not arrived yet
-- (it is marked reversed, so credit_creator.lua will not credit it); {"settled"} when the
-- diamonds already left the hold (the platform bears the loss; nothing changes); or
-- {"already"}.

local reversed_key = KEYS[1]
local earnings_key = KEYS[2]
local earnings_ledger_key = KEYS[3]
local holds_key = KEYS[4]
local held_key = KEYS[5]
local credited_key = KEYS[6]
local event_id = ARGV[1]
local order_id = ARGV[2]
local now = ARGV[3]

if redis.call('SADD', reversed_key, event_id) == 0 then
  return {'already'}
end
local held = redis.call('HGET', held_key, event_id)
if not held then
  if redis.call('SISMEMBER', credited_key, event_id) == 0 then
    return {'blocked'}
  end
  return {'settled'}
end
local diamonds = tonumber(held)
redis.call('HDEL', held_key, event_id)
redis.call('ZREM', holds_key, event_id)
redis.call('HINCRBY', earnings_key, 'pending', -diamonds)
redis.call('HINCRBY', earnings_key, 'reversed', diamonds)
redis.call('XADD', earnings_ledger_key, '*',
  'kind', 'reversal', 'pending', -diamonds, 'reversed', diamonds,
  'ref', event_id, 'order_id', order_id, 'ts', now)
return {'reversed', tostring(diamonds)}
