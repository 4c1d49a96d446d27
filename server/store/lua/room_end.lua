-- End a live: close open combos, mark the room ended and append the room_end event, at once.
--
-- KEYS[1] - room hash                        ({r:R}:room)
-- KEYS[2] - room event stream               ({r:R}:events)
-- KEYS[3] - display names hash               ({r:R}:names)
-- KEYS[4] - open combos hash                 ({r:R}:combos)
-- KEYS[5] - leaderboard zset                 ({r:R}:top)
-- KEYS[6] - published gift event ids set     ({r:R}:published)
-- KEYS[7] - presence hash                    ({r:R}:presence)
-- ARGV[1] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[2] - seconds the room's event data is kept after the end
-- ARGV[3] - the room's wake channel ({r:R}:wake), published to when the events are added
--
-- Returns {"ended", ended_ms} when ended now, {"already", ended_ms} if it had ended before,
-- or {"missing"} if there is no such room.

local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'missing'}
end
if state ~= 'live' then
  return {'already', redis.call('HGET', KEYS[1], 'ended_ms')}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local open = redis.call('HGETALL', KEYS[4])
for i = 1, #open, 2 do
  local sender = open[i]
  local gift, combo = string.match(open[i + 1], '^([^|]*)|(%d+)|')
  local name = redis.call('HGET', KEYS[3], sender) or sender
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*',
    't', 'combo_end', 's', sender, 'n', name, 'g', gift, 'k', combo, 'ts', now)
end
redis.call('DEL', KEYS[4], KEYS[7])
redis.call('HSET', KEYS[1], 'state', 'ended', 'ended_ms', now)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 't', 'room_end', 'ts', now)
redis.call('SPUBLISH', ARGV[3], '')
for i = 2, 6 do
  if i ~= 4 then
    redis.call('EXPIRE', KEYS[i], ARGV[2])
  end
end
return {'ended', tostring(now)}
