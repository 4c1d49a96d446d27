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

if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return {'already'}
end
local held = redis.call('HGET', KEYS[5], ARGV[1])
if not held then
  if redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 0 then
    return {'blocked'}
  end
  return {'settled'}
end
local diamonds = tonumber(held)
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'pending', -diamonds)
redis.call('HINCRBY', KEYS[2], 'reversed', diamonds)
redis.call('XADD', KEYS[3], '*', 'kind', 'reversal', 'pending', -diamonds, 'reversed', diamonds,
  'ref', ARGV[1], 'order_id', ARGV[2], 'ts', ARGV[3])
return {'reversed', tostring(diamonds)}
