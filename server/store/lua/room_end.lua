-- End a live: close open combos, mark the room ended and append the room_end event, at once.
--
-- KEYS[1] - room hash                        ({r:R}:room)
-- KEYS[2] - room event stream               ({r:R}:events)
-- KEYS[3] - display names hash               ({r:R}:names)
-- KEYS[4] - open combos hash                 ({r:R}:combos)
-- KEYS[5] - leaderboard zset                 ({r:R}:top)
-- KEYS[6] - published gift event ids set     ({r:R}:published)
-- KEYS[7] - presence hash                    ({r:R}:presence)
-- KEYS[8] - followers announced this live     ({r:R}:followed)
-- KEYS[9] - sharers announced this live       ({r:R}:shared)
-- ARGV[1] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[2] - seconds the room's event data is kept after the end
-- ARGV[3] - the room's wake channel ({r:R}:wake), published to when the events are added
--
-- The live's figures (_room_summary.lua) are kept in the room hash ("summary") as it ends,
-- before its sets start to expire.
--
-- Returns {"ended", ended_ms} when ended now, {"already", ended_ms} if it had ended before,
-- or {"missing"} if there is no such room.

local room_key = KEYS[1]
local events_key = KEYS[2]
local names_key = KEYS[3]
local combos_key = KEYS[4]
local top_key = KEYS[5]
local published_key = KEYS[6]
local presence_key = KEYS[7]
local followed_key = KEYS[8]
local shared_key = KEYS[9]
local maxlen = ARGV[1]
local keep_s = ARGV[2]
local wake_channel = ARGV[3]

--#include _room_summary

local state = redis.call('HGET', room_key, 'state')
if not state then
  return {'missing'}
end
if state ~= 'live' then
  return {'already', redis.call('HGET', room_key, 'ended_ms')}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local open = redis.call('HGETALL', combos_key)
for i = 1, #open, 2 do
  local sender = open[i]
  local gift, combo = string.match(open[i + 1], '^([^|]*)|(%d+)|')
  local name = redis.call('HGET', names_key, sender) or sender
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
    't', 'combo_end', 's', sender, 'n', name, 'g', gift, 'k', combo, 'ts', now)
end
redis.call('DEL', combos_key, presence_key)
local figures = room_figures(room_key, top_key, names_key, published_key, followed_key)
redis.call('HSET', room_key, 'state', 'ended', 'ended_ms', now, 'summary', cjson.encode(figures))
redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 't', 'room_end', 'ts', now)
redis.call('SPUBLISH', wake_channel, '')
for _, key in ipairs({events_key, names_key, top_key, published_key, followed_key, shared_key}) do
  redis.call('EXPIRE', key, keep_s)
end
return {'ended', tostring(now)}
