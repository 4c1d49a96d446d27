-- Credit a creator's pending diamonds for one gift, at most once per gift event.
-- Runs in the creator's slot right after the debit, and again from the outbox after a crash.
-- The diamonds stay pending until the hold ends (release_diamonds.lua moves them to available),
-- so a chargeback of the coins that paid for them can still take them back.
--
-- KEYS[1] - set of gift event ids already credited ({u:C}:credited)
-- KEYS[2] - earnings hash of the creator          ({u:C}:earnings)
-- KEYS[3] - diamond ledger stream of the creator  ({u:C}:earnings:ledger)
-- KEYS[4] - holds zset, event id -> release ms     ({u:C}:holds)
-- KEYS[5] - held diamonds hash, event id -> n      ({u:C}:held)
-- KEYS[6] - per-live totals hash, room id -> n     ({u:C}:lives)
-- KEYS[7] - set of reversed gift event ids         ({u:C}:reversed)
-- ARGV[1] - gift event id
-- ARGV[2] - diamonds (non-negative integer)
-- ARGV[3] - coins the sender paid
-- ARGV[4] - sender user id
-- ARGV[5] - room id
-- ARGV[6] - gift time, unix milliseconds
-- ARGV[7] - when the hold ends, unix milliseconds
-- ARGV[8] - the creator share the diamonds were computed with, "numerator/denominator"
--
-- Returns 1 if credited now, 0 if this event was credited (or reversed) before: nothing done.
--
-- Ledger entries carry signed per-bucket changes (pending, available, reserved, withdrawn,
-- reversed); each bucket in the earnings hash is the sum of its changes over the ledger.

if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 0
end
if redis.call('SISMEMBER', KEYS[7], ARGV[1]) == 1 then
  -- The coins that paid for this gift were clawed back before it reached the creator.
  return 0
end
local diamonds = tonumber(ARGV[2])
redis.call('HINCRBY', KEYS[2], 'pending', diamonds)
redis.call('HINCRBY', KEYS[2], 'lifetime', diamonds)
redis.call('HINCRBY', KEYS[6], ARGV[5], diamonds)
if diamonds > 0 then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
  redis.call('HSET', KEYS[5], ARGV[1], diamonds)
end
redis.call('XADD', KEYS[3], '*',
  'kind', 'gift', 'pending', diamonds, 'ref', ARGV[1],
  'coins', ARGV[3], 'share', ARGV[8], 'sender', ARGV[4], 'room_id', ARGV[5], 'ts', ARGV[6])
return 1
