-- Copy the creator's follower count into their live room, and announce a follow made during
-- this live once per follower. Runs in the room's slot, after follow.lua, unfollow.lua or
-- creator_card.lua in the creator's slot.
--
-- KEYS[1] - room hash                          ({r:R}:room)
-- KEYS[2] - room event stream                  ({r:R}:events)
-- KEYS[3] - followers already announced, set   ({r:R}:followed)
-- ARGV[1] - follower id ("" when only the count is copied)
-- ARGV[2] - follower display name
-- ARGV[3] - the creator's follower count
-- ARGV[4] - the version that count was read at (followers:v)
-- ARGV[5] - when the follow began, engine ms ("" for no follow: an unfollow, a copy)
-- ARGV[6] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[7] - the room's wake channel ({r:R}:wake), published to when the event is added
--
-- Returns {"ok", announced} (announced 1 if a follow event was added now), {"ended"} if the
-- room is not live, or {"missing"} if there is no such room.
--
-- Copies arrive in any order from many processes: a count replaces the room's only if its
-- version is newer, so the room ends with the count of the latest change it was told of.
-- A follow is announced if it began during this live (not before the room was created) and
-- its follower was not announced this live yet: a retry after a crash announces it, an
-- unfollow and follow again does not.

local room_key = KEYS[1]
local events_key = KEYS[2]
local followed_key = KEYS[3]
local follower = ARGV[1]
local name = ARGV[2]
local count = ARGV[3]
local version = tonumber(ARGV[4])
local since = ARGV[5]
local maxlen = ARGV[6]
local wake_channel = ARGV[7]

local room = redis.call('HMGET', room_key, 'state', 'followers_v', 'created_ms')
if not room[1] then
  return {'missing'}
end
if room[1] ~= 'live' then
  return {'ended'}
end
if version > tonumber(room[2] or '-1') then
  redis.call('HSET', room_key, 'followers', count, 'followers_v', version)
end
if since == '' or tonumber(since) < tonumber(room[3]) then
  return {'ok', 0}
end
if redis.call('SADD', followed_key, follower) == 0 then
  return {'ok', 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 't', 'follow', 's', follower, 'n', name, 'ts', now)
redis.call('SPUBLISH', wake_channel, '')
return {'ok', 1}
