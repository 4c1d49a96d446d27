-- Delete a chat message of a live: out of the room's log and its recent chat at once, so no
-- later welcome and no catch-up carries it, and a chat_deleted event in its place.
--
-- KEYS[1] - room hash                               ({r:R}:room)
-- KEYS[2] - room event stream                      ({r:R}:events)
-- KEYS[3] - the live's last chat messages stream    ({r:R}:chat)
-- KEYS[4] - chat event id -> offset ("d": deleted)  ({r:R}:chat:ids)
-- KEYS[5] - the previous generation of KEYS[4]      ({r:R}:chat:ids:old)
-- ARGV[1] - the chat message's event id
-- ARGV[2] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[3] - the room's wake channel ({r:R}:wake), published to when the event is added
--
-- Returns one of:
--   {"deleted", sender}   deleted now (a chat_deleted event added if the room is live); the
--                         message's sender ("" if the log no longer held the message)
--   {"again"}             deleted before: nothing changed
--   {"missing"}           this live has no such message, or not among its last messages
--                         (``chat_post.lua`` keeps the ids of the last 1-2 generations)
--
-- After the live ended the message is still removed, with no event: room_end stays last.

local room_key = KEYS[1]
local events_key = KEYS[2]
local chat_key = KEYS[3]
local ids_key = KEYS[4]
local old_ids_key = KEYS[5]
local event_id = ARGV[1]
local maxlen = ARGV[2]
local wake_channel = ARGV[3]

local offset = redis.call('HGET', ids_key, event_id)
if not offset then
  ids_key = old_ids_key
  offset = redis.call('HGET', ids_key, event_id)
end
if not offset then
  return {'missing'}
end
if offset == 'd' then
  return {'again'}
end
local sender = ''
local entry = redis.call('XRANGE', events_key, offset, offset)
if entry[1] then
  local fields = entry[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 's' then
      sender = fields[i + 1]
    end
  end
end
-- Counted, so that the stream's window can tell deleted entries from trimmed ones.
redis.call('HINCRBY', room_key, 'deleted', redis.call('XDEL', events_key, offset))
redis.call('XDEL', chat_key, offset)
redis.call('HSET', ids_key, event_id, 'd')
if redis.call('HGET', room_key, 'state') == 'live' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 't', 'chat_deleted', 'e', event_id, 'ts', now)
  redis.call('SPUBLISH', wake_channel, '')
end
return {'deleted', sender}
