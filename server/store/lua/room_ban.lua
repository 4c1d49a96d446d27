-- Tell every hub process of a live that a user was banned from it or unbanned, or that an
-- overlay token was replaced: a marker in the room's log, which each hub acts on (closing the
-- user's connections on a ban, the overlays opened with the old token on a revocation) and
-- shows to no one.
--
-- KEYS[1] - room hash                               ({r:R}:room)
-- KEYS[2] - room event stream                      ({r:R}:events)
-- ARGV[1] - "ban", "unban" or "overlay_revoked"
-- ARGV[2] - the user's id; for "overlay_revoked", the old token's fingerprint
--           (store.overlays.fingerprint: the token itself never enters the log)
-- ARGV[3] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[4] - the room's wake channel ({r:R}:wake), published to when the marker is added
--
-- Returns {"ok", 1} if the marker was added, {"ok", 0} if the room is not live (no hub
-- serves it; the creator's ban set alone holds the ban, and no overlay is open).

local room_key = KEYS[1]
local events_key = KEYS[2]
local kind = ARGV[1]
local user = ARGV[2]
local maxlen = ARGV[3]
local wake_channel = ARGV[4]

if redis.call('HGET', room_key, 'state') ~= 'live' then
  return {'ok', 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 't', kind, 'u', user, 'ts', now)
redis.call('SPUBLISH', wake_channel, '')
return {'ok', 1}
