-- Add one debited gift to the video it was sent to: its coins, top gifters and names.
-- Runs once per gift event (a second call with the same event id changes nothing), in the
-- video's slot; the sender's debit has already happened in the sender's slot. A video has
-- no event stream and no combos: its page reads the totals.
--
-- KEYS[1] - video hash                          ({v:V}:video)
-- KEYS[2] - top gifters zset, sender -> coins   ({v:V}:top)
-- KEYS[3] - display names hash, user -> name    ({v:V}:names)
-- KEYS[4] - added gift event ids set            ({v:V}:published)
-- ARGV[1] - gift event id
-- ARGV[2] - sender id
-- ARGV[3] - sender display name
-- ARGV[4] - coins the gift cost
--
-- Returns "ok" (added now), "dup" (already added) or "missing" (no such video: nothing done;
-- videos are never deleted, so only a gift sent past the video check could meet it).

local video_key = KEYS[1]
local top_key = KEYS[2]
local names_key = KEYS[3]
local published_key = KEYS[4]
local event_id = ARGV[1]
local sender = ARGV[2]
local name = ARGV[3]
local coins = tonumber(ARGV[4])

if redis.call('EXISTS', video_key) == 0 then
  return 'missing'
end
if redis.call('SADD', published_key, event_id) == 0 then
  return 'dup'
end
redis.call('HINCRBY', video_key, 'coins', coins)
redis.call('ZINCRBY', top_key, coins, sender)
redis.call('HSET', names_key, sender, name)
return 'ok'
