-- End a running battle, once: at its end (the engine's clock) or at once by a forfeit.
--
-- KEYS[1] - battle record hash ({b:B}:battle)
-- ARGV[1] - the creator who forfeits (ended their live), or "" for the end at ends_at
-- ARGV[2] - settle time, milliseconds: the end at ends_at is taken this long after it, so
--           that gifts debited just before it are delivered and counted first
--
-- Returns one of:
--   {"ok", ended_ms, winner, forfeit, score_0, score_1}    ended now
--   {"done", ended_ms, winner, forfeit, score_0, score_1}  ended before (the same result:
--                                                           its announcement can be retried)
--   {"early", due_ms}                                      not due yet
--   {"not_running", state}                                 never ran (invited, declined, lapsed)
-- winner is "" for a draw. A forfeit before ends_at ends the battle at that moment with the
-- scores so far and the other side wins; one at or after ends_at is the ordinary end.

local info_key = KEYS[1]
local forfeit = ARGV[1]
local settle_ms = tonumber(ARGV[2])

local b = redis.call('HMGET', info_key,
  'state', 'inviter', 'opponent', 'ends_at', 'score_0', 'score_1',
  'ended_ms', 'winner', 'forfeit', 'final_0', 'final_1')
local state = b[1]
if state == 'ended' then
  return {'done', b[7], b[8], b[9], b[10], b[11]}
end
if state ~= 'running' then
  return {'not_running', state or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends_at = tonumber(b[4])
if forfeit ~= '' and now >= ends_at then
  forfeit = ''
end
if forfeit == '' and now < ends_at + settle_ms then
  return {'early', tostring(ends_at + settle_ms)}
end
local ended = ends_at
if forfeit ~= '' then
  ended = now
end
local s0, s1 = tonumber(b[5]), tonumber(b[6])
local winner = ''
if forfeit == b[2] then
  winner = b[3]
elseif forfeit == b[3] then
  winner = b[2]
elseif s0 > s1 then
  winner = b[2]
elseif s1 > s0 then
  winner = b[3]
end
redis.call('HSET', info_key, 'state', 'ended', 'ended_ms', ended, 'winner', winner,
  'forfeit', forfeit, 'final_0', s0, 'final_1', s1)
return {'ok', tostring(ended), winner, forfeit, tostring(s0), tostring(s1)}
