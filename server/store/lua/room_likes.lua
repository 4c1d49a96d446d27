-- Write one hub process's likes and joins of one tick into a live room, at most once: add
-- the likes to the room's total and append one ``tally`` event that every hub delivers as
-- the room's ``likes`` and ``joins`` state.
--
-- KEYS[1] - room hash                        ({r:R}:room)
-- KEYS[2] - room event stream               ({r:R}:events)
-- KEYS[3] - tally sequence numbers hash, node -> last sequence written ({r:R}:tallies)
-- ARGV[1] - node id of the calling hub process
-- ARGV[2] - the tally's sequence number in that process (increasing)
-- ARGV[3] - likes to add (>= 0)
-- ARGV[4] - the tick's top likers in this process, JSON [[id, name, count], ...]
-- ARGV[5] - joins in this process this tick (>= 0)
-- ARGV[6] - named joiners, JSON [[id, name], ...]
-- ARGV[7] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[8] - seconds the sequence numbers are kept (a room's retention)
-- ARGV[9] - the room's wake channel ({r:R}:wake), published to when the event is added
--
-- Returns {status, total}: status "ok" (written), "dup" (this sequence number or a later
-- one was written already: nothing changes) or "ended" (the room is not live: dropped);
-- total is the room's like total afterwards.

local room_key = KEYS[1]
local events_key = KEYS[2]
local tallies_key = KEYS[3]
local node_id = ARGV[1]
local seq = tonumber(ARGV[2])
local likes = tonumber(ARGV[3])
local top = ARGV[4]
local joins = tonumber(ARGV[5])
local joiners = ARGV[6]
local maxlen = ARGV[7]
local keep_s = ARGV[8]
local wake_channel = ARGV[9]

local state, total = unpack(redis.call('HMGET', room_key, 'state', 'likes'))
total = tonumber(total) or 0
if state ~= 'live' then
  return {'ended', total}
end
local last = tonumber(redis.call('HGET', tallies_key, node_id))
if last and last >= seq then
  return {'dup', total}
end
redis.call('HSET', tallies_key, node_id, seq)
redis.call('EXPIRE', tallies_key, keep_s)
if likes > 0 then
  total = redis.call('HINCRBY', room_key, 'likes', likes)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
  't', 'tally', 'l', likes, 'lt', total, 'lp', top, 'j', joins, 'jn', joiners, 'ts', now)
redis.call('SPUBLISH', wake_channel, '')
return {'ok', total}
