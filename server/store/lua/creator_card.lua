-- Read what a creator's public profile shows, as of one instant. Runs in the creator's slot;
-- changes nothing.
--
-- KEYS[1] - the creator's profile hash         ({u:C}:profile)
-- KEYS[2] - followers zset                     ({u:C}:followers)
-- KEYS[3] - followers version counter         ({u:C}:followers:v)
-- KEYS[4] - the creator's live room id         ({u:C}:live)
-- ARGV[1] - the caller's user id, or "" for an anonymous caller
--
-- Returns {role, name, count, version, following, live_room}: role and name "" where the
-- profile has none, following 1 if the caller follows the creator, live_room "" if none.
-- The count and its version are read together, so a live room copying them orders them
-- rightly against the copies follows and unfollows make (room_follow.lua).

local profile_key = KEYS[1]
local followers_key = KEYS[2]
local version_key = KEYS[3]
local live_key = KEYS[4]
local caller = ARGV[1]

local profile = redis.call('HMGET', profile_key, 'role', 'name')
local following = 0
if caller ~= '' and redis.call('ZSCORE', followers_key, caller) then
  following = 1
end
return {
  profile[1] or '', profile[2] or '', redis.call('ZCARD', followers_key),
  redis.call('GET', version_key) or '0', following, redis.call('GET', live_key) or ''
}
