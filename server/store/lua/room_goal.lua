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

local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'missing'}
end
if state ~= 'live' then
  return {'ended'}
end
redis.call('HSET', KEYS[1], 'goal', ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 't', 'goal_set', 'goal', ARGV[1], 'ts', now)
redis.call('SPUBLISH', ARGV[3], '')
return {'ok', redis.call('HGET', KEYS[1], 'coins') or '0'}
