-- Add a follower to a creator, at most once: the creator's follower set is the truth of the
-- follower count. Runs in the creator's slot.
--
-- KEYS[1] - followers zset, follower -> since ms ({u:C}:followers)
-- KEYS[2] - followers version counter         ({u:C}:followers:v)
-- KEYS[3] - the creator's profile hash         ({u:C}:profile)
-- KEYS[4] - the creator's live room id         ({u:C}:live)
-- ARGV[1] - follower id
--
-- Returns {"not_creator"} if the profile's role is not creator, else {"ok", added, count,
-- version, since, live_room}: added is 1 if the follow began now (0 if it already held),
-- count the followers after it, version the counter after it (bumped only when added),
-- since when the follow began (engine ms), now or at the earlier follow that still holds,
-- live_room the creator's live room id at that instant ("" if none).

local followers_key = KEYS[1]
local version_key = KEYS[2]
local profile_key = KEYS[3]
local live_key = KEYS[4]
local follower = ARGV[1]

if redis.call('HGET', profile_key, 'role') ~= 'creator' then
  return {'not_creator'}
end
local since = redis.call('ZSCORE', followers_key, follower)
local added = 0
if not since then
  local t = redis.call('TIME')
  since = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  redis.call('ZADD', followers_key, since, follower)
  redis.call('INCR', version_key)
  added = 1
end
local version = redis.call('GET', version_key) or '0'
return {'ok', added, redis.call('ZCARD', followers_key), version, since, redis.call('GET', live_key) or ''}
