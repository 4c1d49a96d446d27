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
-- KEYS[8] - per-video totals hash, video id -> n   ({u:C}:video_earnings)
-- ARGV[1] - gift event id
-- ARGV[2] - diamonds (non-negative integer)
-- ARGV[3] - coins the sender paid
-- ARGV[4] - sender user id
-- ARGV[5] - room id ("" for a gift on a video)
-- ARGV[6] - gift time, unix milliseconds
-- ARGV[7] - when the hold ends, unix milliseconds
-- ARGV[8] - the creator share the diamonds were computed with, "numerator/denominator"
-- ARGV[9] - gift id
-- ARGV[10] - count
-- ARGV[11] - sender display name ("" if unknown)
-- ARGV[12] - video id of a gift on a video, else "": its diamonds count in KEYS[8] instead of
--            KEYS[6], and the ledger entry names the video
--
-- Returns 1 if credited now, 0 if this event was credited (or reversed) before: nothing done.
--
-- Ledger entries carry signed per-bucket changes (pending, available, reserved, withdrawn,
-- reversed); each bucket in the earnings hash is the sum of its changes over the ledger.

local credited_key = KEYS[1]
local earnings_key = KEYS[2]
local earnings_ledger_key = KEYS[3]
local holds_key = KEYS[4]
local held_key = KEYS[5]
local lives_key = KEYS[6]
local reversed_key = KEYS[7]
local video_earnings_key = KEYS[8]
local event_id = ARGV[1]
local diamonds = tonumber(ARGV[2])
local coins = ARGV[3]
local sender_id = ARGV[4]
local room_id = ARGV[5]
local ts = ARGV[6]
local hold_until_ms = ARGV[7]
local share = ARGV[8]
local gift_id = ARGV[9]
local count = ARGV[10]
local sender_name = ARGV[11]
local video_id = ARGV[12]

if redis.call('SADD', credited_key, event_id) == 0 then
  return 0
end
if redis.call('SISMEMBER', reversed_key, event_id) == 1 then
  -- The coins that paid for this gift were clawed back before it reached the creator.
  return 0
end
redis.call('HINCRBY', earnings_key, 'pending', diamonds)
redis.call('HINCRBY', earnings_key, 'lifetime', diamonds)
local video_field = {}
if video_id ~= '' then
  redis.call('HINCRBY', video_earnings_key, video_id, diamonds)
  video_field = {'video_id', video_id}
else
  redis.call('HINCRBY', lives_key, room_id, diamonds)
end
if diamonds > 0 then
  redis.call('ZADD', holds_key, hold_until_ms, event_id)
  redis.call('HSET', held_key, event_id, diamonds)
end
redis.call('XADD', earnings_ledger_key, '*',
  'kind', 'gift', 'pending', diamonds, 'ref', event_id,
  'coins', coins, 'share', share, 'sender', sender_id, 'sender_name', sender_name,
  'room_id', room_id, 'gift_id', gift_id, 'count', count, 'ts', ts, unpack(video_field))
return 1
