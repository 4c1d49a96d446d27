-- Post one chat message into its room: idempotency record, slow mode, the room event, at once
-- in the room's slot. The sender's chat rate token was taken before (``store.chat``).
--
-- KEYS[1] - room hash                               ({r:R}:room)
-- KEYS[2] - room event stream                      ({r:R}:events)
-- KEYS[3] - the live's last chat messages stream    ({r:R}:chat)
-- KEYS[4] - the message's idempotency record        ({r:R}:chat:msg:<sender>:<client id>)
-- KEYS[5] - the sender's slow mode marker           ({r:R}:chat:slow:<sender>)
-- KEYS[6] - chat event id -> offset, for deletes    ({r:R}:chat:ids)
-- KEYS[7] - the sender's mute in this live           ({r:R}:mute:<sender>)
-- KEYS[8] - the previous generation of KEYS[6]      ({r:R}:chat:ids:old)
-- ARGV[1] - chat event id to use if this is a new message
-- ARGV[2] - sender id
-- ARGV[3] - sender display name
-- ARGV[4] - the message's text, sanitised and masked
-- ARGV[5] - the sender's badges, comma-separated ("" for none)
-- ARGV[6] - fingerprint of the request the client id is bound to
-- ARGV[7] - idempotency record lifetime, seconds
-- ARGV[8] - slow mode, milliseconds (0: off, or the sender is exempt)
-- ARGV[9] - how long a slow mode marker lives, milliseconds (the longest slow mode)
-- ARGV[10] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[11] - how many chat messages KEYS[3] keeps
-- ARGV[12] - how long KEYS[3] is kept after the last message, seconds
-- ARGV[13] - the room's wake channel ({r:R}:wake), published to when the event is added
-- ARGV[14] - how many message ids KEYS[6] holds before it becomes KEYS[8] and a new one starts
--
-- Returns one of:
--   {"ok", event_id, ts}       posted now
--   {"replay", event_id}       same client id and same text: the first answer, nothing posted
--   {"mismatch"}               same client id, another text: nothing posted
--   {"ended"}                  the room is not live: nothing posted
--   {"slow", retry_after_ms}   the sender posted less than the slow mode ago: nothing posted
--   {"muted", retry_after_ms}  a moderator muted the sender in this live: nothing posted
--
-- A replay is answered before the room check, so a resend gets its first answer even after
-- the live ended. The slow mode marker is set for ARGV[9] on each message posted under slow
-- mode, so how long ago it was set is ARGV[9] less its remaining time to live: a creator who
-- shortens the slow mode frees the wait at once, and the engine's clock alone times it.
-- The message goes into KEYS[3] under the same id as in KEYS[2], so a welcome can tell which
-- of them its offset already covers.

local room_key = KEYS[1]
local events_key = KEYS[2]
local chat_key = KEYS[3]
local record_key = KEYS[4]
local slow_key = KEYS[5]
local ids_key = KEYS[6]
local mute_key = KEYS[7]
local old_ids_key = KEYS[8]
local event_id = ARGV[1]
local sender = ARGV[2]
local name = ARGV[3]
local text = ARGV[4]
local badges = ARGV[5]
local fingerprint = ARGV[6]
local record_ttl_s = ARGV[7]
local slow_ms = tonumber(ARGV[8])
local slow_marker_ms = tonumber(ARGV[9])
local maxlen = ARGV[10]
local recent = ARGV[11]
local recent_keep_s = ARGV[12]
local wake_channel = ARGV[13]
local ids_generation = tonumber(ARGV[14])

local record = redis.call('GET', record_key)
if record then
  local bound, earlier = string.match(record, '^([^|]*)|(.*)$')
  if bound ~= fingerprint then
    return {'mismatch'}
  end
  return {'replay', earlier}
end
if redis.call('HGET', room_key, 'state') ~= 'live' then
  return {'ended'}
end
local muted = redis.call('PTTL', mute_key)
if muted > 0 then
  return {'muted', muted}
end
if slow_ms > 0 then
  local left = redis.call('PTTL', slow_key)
  if left > 0 then
    local wait = slow_ms - (slow_marker_ms - left)
    if wait > 0 then
      return {'slow', wait}
    end
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local offset = redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
  't', 'chat', 'e', event_id, 's', sender, 'n', name, 'x', text, 'bd', badges, 'ts', now)
redis.call('XADD', chat_key, 'MAXLEN', recent, offset,
  't', 'chat', 'e', event_id, 's', sender, 'n', name, 'x', text, 'bd', badges, 'ts', now)
redis.call('EXPIRE', chat_key, recent_keep_s)
-- The ids of the last ARGV[14] to 2 * ARGV[14] messages, whatever the length of the live.
if redis.call('HSET', ids_key, event_id, offset) == 1 and redis.call('HLEN', ids_key) >= ids_generation then
  redis.call('RENAME', ids_key, old_ids_key)
else
  redis.call('EXPIRE', ids_key, recent_keep_s)
end
redis.call('SET', record_key, fingerprint .. '|' .. event_id, 'EX', record_ttl_s)
if slow_ms > 0 then
  redis.call('SET', slow_key, '1', 'PX', slow_marker_ms)
end
redis.call('SPUBLISH', wake_channel, '')
return {'ok', event_id, tostring(now)}
