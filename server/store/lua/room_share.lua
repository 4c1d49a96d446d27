-- Count a share of a live room and announce it, once per user per live. Runs in the room's slot.
--
-- KEYS[1] - room hash                          ({r:R}:room)
-- KEYS[2] - room event stream                  ({r:R}:events)
-- KEYS[3] - sharers already announced, set     ({r:R}:shared)
-- ARGV[1] - the sharer's user id
-- ARGV[2] - the sharer's display name
-- ARGV[3] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[4] - the room's wake channel ({r:R}:wake), published to when the event is added
--
-- Returns {"ok", counted} (counted 1 if a share event was added now, 0 if this user's share
-- was announced before in this live), {"ended"} if the room is not live, or {"missing"}.

local room_key = KEYS[1]
local events_key = KEYS[2]
local shared_key = KEYS[3]
local sharer = ARGV[1]
local name = ARGV[2]
local maxlen = ARGV[3]
local wake_channel = ARGV[4]

local state = redis.call('HGET', room_key, 'state')
if not state then
  return {'missing'}
end
if state ~= 'live' then
  return {'ended'}
end
if redis.call('SADD', shared_key, sharer) == 0 then
  return {'ok', 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 't', 'share', 's', sharer, 'n', name, 'ts', now)
redis.call('SPUBLISH', wake_channel, '')
return {'ok', 1}
