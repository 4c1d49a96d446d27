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

local open = redis.call('HGET', KEYS[3], ARGV[1])
if not open then
  return 0
end
local gift, combo, last = string.match(open, '^([^|]*)|(%d+)|(%d+)$')
if last ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(last) <= tonumber(ARGV[3]) then
  return -1
end
redis.call('HDEL', KEYS[3], ARGV[1])
local name = redis.call('HGET', KEYS[2], ARGV[1]) or ARGV[1]
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*',
  't', 'combo_end', 's', ARGV[1], 'n', name, 'g', gift, 'k', combo, 'ts', now)
redis.call('SPUBLISH', ARGV[5], '')
return 1
