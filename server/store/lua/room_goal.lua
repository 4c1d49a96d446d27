-- Set a live room's coin goal and tell every hub through the room's event stream.
--
-- KEYS[1] - room hash                        ({r:R}:room)
-- KEYS[2] - room event stream               ({r:R}:events)
-- ARGV[1] - goal in coins (positive integer)
-- ARGV[2] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[3] - the room's wake channel ({r:R}:wake), published to when the event is added
--
-- Returns {"ok", progress} with the coins received so far this live, {"ended"} if the
-- room is not live, or {"missing"} if there is no such room.

local room_key = KEYS[1]
local events_key = KEYS[2]
local goal = ARGV[1]
local maxlen = ARGV[2]
local wake_channel = ARGV[3]

local state = redis.call('HGET', room_key, 'state')
if not state then
  return {'missing'}
end
if state ~= 'live' then
  return {'ended'}
end
redis.call('HSET', room_key, 'goal', goal)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 't', 'goal_set', 'goal', goal, 'ts', now)
redis.call('SPUBLISH', wake_channel, '')
return {'ok', redis.call('HGET', room_key, 'coins') or '0'}
