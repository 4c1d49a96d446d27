-- Credit a creator's pending diamonds for one gift, at most once per gift event.
-- Runs in the creator's slot right after the debit, and again from the outbox after a crash.
--
-- KEYS[1] - set of gift event ids already credited ({u:C}:credited)
-- KEYS[2] - earnings hash of the creator          ({u:C}:earnings)
-- KEYS[3] - diamond ledger stream of the creator  ({u:C}:earnings:ledger)
-- ARGV[1] - gift event id
-- ARGV[2] - diamonds (non-negative integer)
-- ARGV[3] - coins the sender paid
-- ARGV[4] - sender user id
-- ARGV[5] - room id
-- ARGV[6] - gift time, unix milliseconds
--
-- Returns 1 if credited now, 0 if this event was credited before (nothing done).

if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local diamonds = tonumber(ARGV[2])
local pending = redis.call('HINCRBY', KEYS[2], 'pending', diamonds)
redis.call('HINCRBY', KEYS[2], 'lifetime', diamonds)
redis.call('XADD', KEYS[3], '*',
  'kind', 'gift', 'delta', diamonds, 'pending', pending, 'ref', ARGV[1],
  'coins', ARGV[3], 'sender', ARGV[4], 'room_id', ARGV[5], 'ts', ARGV[6])
return 1
