-- A battle in one of its rooms, in the room's slot: registered when invited, its start and
-- its end in the room's log, each once.
--
-- KEYS[1] - room hash                    ({r:R}:room)
-- KEYS[2] - room event stream            ({r:R}:events)
-- KEYS[3] - the room's battles, id -> invited ms ({r:R}:battles)
-- KEYS[4] - battle events already logged ({r:R}:battle:events)
-- KEYS[5] - the latest each battle's window can end ({r:R}:battle:ends)
-- ARGV[1] - "register", "start", "end" or "close" (it never ran: declined or lapsed)
-- ARGV[2] - battle id
-- ARGV[3] - register: the invitation's engine ms; start, end: the event (JSON); close: ""
-- ARGV[4] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[5] - the room's wake channel ({r:R}:wake)
-- ARGV[6] - the latest the battle's window can end now (engine ms): on register, the
--           invitation's lapse plus the longest battle; on start, its ends_at; on end, its
--           ended_ms; on close, the invitation's time (nothing counts)
--
-- Returns {"ok"}, {"dup"} (this event is in the log already) or {"ended"}: the live ended,
-- so nobody is left to see the event; it is not added (room_end stays the last event).
-- KEYS[5] only ever narrows, and never below the battle's true end, so a gift debited after
-- it cannot count there and room_gift.lua names no battle for it: an ended or abandoned
-- battle costs its rooms' later gifts nothing.
--
-- A battle is registered before it can start (battle_answer.lua), and a room has one battle
-- at a time, so the battle a gift's debit time falls in is the last one registered at or
-- before it (room_gift.lua).

local room_key = KEYS[1]
local events_key = KEYS[2]
local battles_key = KEYS[3]
local logged_key = KEYS[4]
local ends_key = KEYS[5]
local mode = ARGV[1]
local battle_id = ARGV[2]
local maxlen = ARGV[4]
local wake_channel = ARGV[5]
local window_end = tonumber(ARGV[6])

local known = tonumber(redis.call('ZSCORE', ends_key, battle_id))
if known == nil or window_end < known then
  redis.call('ZADD', ends_key, window_end, battle_id)
end
if mode == 'register' then
  redis.call('ZADD', battles_key, ARGV[3], battle_id)
  return {'ok'}
end
if mode == 'close' then
  return {'ok'}
end
if redis.call('SADD', logged_key, mode .. ':' .. battle_id) == 0 then
  return {'dup'}
end
if redis.call('HGET', room_key, 'state') ~= 'live' then
  return {'ended'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kind = 'battle'
if mode == 'start' then
  redis.call('HSET', room_key, 'battle', battle_id)
else
  kind = 'battle_end'
  if redis.call('HGET', room_key, 'battle') == battle_id then
    redis.call('HDEL', room_key, 'battle')
  end
end
redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 't', kind, 'j', ARGV[3], 'ts', now)
redis.call('SPUBLISH', wake_channel, '')
return {'ok'}
