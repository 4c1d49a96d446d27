-- Accept or decline an invitation to battle, in the battle's slot.
--
-- KEYS[1] - battle record hash ({b:B}:battle)
-- ARGV[1] - "accept" (the opponent only) or "decline" (the opponent, or the inviter withdrawing)
-- ARGV[2] - the caller's user id
-- ARGV[3] - how long an invitation stands, milliseconds
-- ARGV[4] - this answer's id (new to it), kept with the answer: the same call sent again
--           after its reply was lost is answered as the first time
--
-- Returns one of:
--   {"ok", state, started_ms, ends_at}   accepted (running, from now on the engine's clock) or declined
--   {"missing"}                          no such battle
--   {"forbidden"}                        the caller may not answer this invitation
--   {"not_invited", state}               it was answered already, or has run or ended
--   {"lapsed"}                           the invitation is older than ARGV[3]: it lapses now

local info_key = KEYS[1]
local answer = ARGV[1]
local caller = ARGV[2]
local lapse_ms = tonumber(ARGV[3])

local answer_id = ARGV[4]
local b = redis.call('HMGET', info_key, 'state', 'inviter', 'opponent', 'invited_ms', 'duration_ms',
  'answer_id', 'started_ms', 'ends_at')
local state, inviter, opponent = b[1], b[2], b[3]
if not state then
  return {'missing'}
end
if caller ~= opponent and (answer == 'accept' or caller ~= inviter) then
  return {'forbidden'}
end
if state ~= 'invited' then
  if b[6] == answer_id then
    return {'ok', state, b[7] or '', b[8] or ''}
  end
  return {'not_invited', state}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(b[4]) >= lapse_ms then
  redis.call('HSET', info_key, 'state', 'lapsed', 'ended_ms', now)
  return {'lapsed'}
end
if answer == 'decline' then
  redis.call('HSET', info_key, 'state', 'declined', 'ended_ms', now, 'answer_id', answer_id)
  return {'ok', 'declined', '', ''}
end
local ends_at = now + tonumber(b[5])
redis.call('HSET', info_key, 'state', 'running', 'started_ms', now, 'ends_at', ends_at, 'v', 1,
  'answer_id', answer_id)
return {'ok', 'running', tostring(now), tostring(ends_at)}
