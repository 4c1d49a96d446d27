-- Remove a follower from a creator; removing one who does not follow changes nothing.
-- Runs in the creator's slot.
--
-- KEYS[1] - followers zset, follower -> since ms ({u:C}:followers)
-- KEYS[2] - followers version counter         ({u:C}:followers:v)
-- KEYS[3] - the creator's profile hash         ({u:C}:profile)
-- KEYS[4] - the creator's live room id         ({u:C}:live)
-- ARGV[1] - follower id
--
-- Returns {"not_creator"} if the profile's role is not creator, else {"ok", removed, count,
-- version, live_room}: removed is 1 if a follow ended now, count the followers after it,
-- version the counter after it (bumped only when removed), live_room the creator's live room
-- id at that instant ("" if none).

local followers_key = KEYS[1]
local version_key = KEYS[2]
local profile_key = KEYS[3]
local live_key = KEYS[4]
local follower = ARGV[1]

if redis.call('HGET', profile_key, 'role') ~= 'creator' then
  return {'not_creator'}
end
local removed = redis.call('ZREM', followers_key, follower)
if removed == 1 then
  redis.call('INCR', version_key)
end
local version = redis.call('GET', version_key) or '0'
return {'ok', removed, redis.call('ZCARD', followers_key), version, redis.call('GET', live_key) or ''}
