-- Close a sender's combo whose window passed without a continuation: one combo_end event.
-- Any hub process may call this when it sees the window elapse; only the first call for a
-- given streak writes the event, so combo_end appears exactly once.
--
-- KEYS[1] - room event stream               ({r:R}:events)
-- KEYS[2] - display names hash               ({r:R}:names)
-- KEYS[3] - open combos hash                 ({r:R}:combos)
-- ARGV[1] - sender id
-- ARGV[2] - ts (engine ms) of the gift event the caller saw last in this streak
-- ARGV[3] - combo window, milliseconds
-- ARGV[4] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[5] - the room's wake channel ({r:R}:wake), published to when the event is added
--
-- Returns 1 if the combo was closed now, 0 if it was already closed or continued since
-- (nothing left to watch), -1 if its window has not passed yet by the engine's clock.

local events_key = KEYS[1]
local names_key = KEYS[2]
local combos_key = KEYS[3]
local sender_id = ARGV[1]
local last_ts = ARGV[2]
local window_ms = tonumber(ARGV[3])
local maxlen = ARGV[4]
local wake_channel = ARGV[5]

local open = redis.call('HGET', combos_key, sender_id)
if not open then
  return 0
end
local gift, combo, last = string.match(open, '^([^|]*)|(%d+)|(%d+)$')
if last ~= last_ts then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(last) <= window_ms then
  return -1
end
redis.call('HDEL', combos_key, sender_id)
local name = redis.call('HGET', names_key, sender_id) or sender_id
redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
  't', 'combo_end', 's', sender_id, 'n', name, 'g', gift, 'k', combo, 'ts', now)
redis.call('SPUBLISH', wake_channel, '')
return 1
