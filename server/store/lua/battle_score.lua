-- Count one gift in a battle, at most once per gift event, in the battle's slot.
--
-- KEYS[1] - battle record hash ({b:B}:battle)
-- KEYS[2] - gift event ids counted ({b:B}:scored)
-- KEYS[3] - side 0's supporters, id -> coins ({b:B}:top:0)
-- KEYS[4] - side 1's supporters ({b:B}:top:1)
-- KEYS[5] - supporters' display names ({b:B}:names)
-- ARGV[1] - gift event id
-- ARGV[2] - the room the gift went to
-- ARGV[3] - coins the gift cost
-- ARGV[4] - sender id
-- ARGV[5] - sender display name
-- ARGV[6] - the debit's time: the engine ms of the sender's ledger entry (gift_debit.lua)
--
-- Returns {"ok"} (counted now), {"dup"} (counted before), or {"outside"}: the battle never
-- ran, the room is neither side, or the debit is outside [started_ms, end), where end is
-- ended_ms once the battle ended (a forfeit ends it early) and ends_at until then. A battle's
-- score is therefore the coins of exactly the gifts to its rooms debited in its window,
-- whenever each is delivered (a crashed process's by the sweeper, after the end too).

local info_key = KEYS[1]
local scored_key = KEYS[2]
local names_key = KEYS[5]
local event_id = ARGV[1]
local room_id = ARGV[2]
local coins = tonumber(ARGV[3])
local sender = ARGV[4]
local name = ARGV[5]
local debit_ms = tonumber(ARGV[6])

local b = redis.call('HMGET', info_key, 'state', 'room_0', 'room_1', 'started_ms', 'ends_at', 'ended_ms')
local state = b[1]
if state ~= 'running' and state ~= 'ended' then
  return {'outside'}
end
local side
if room_id == b[2] then
  side = 0
elseif room_id == b[3] then
  side = 1
else
  return {'outside'}
end
local finish = tonumber(b[6] or b[5])
if debit_ms < tonumber(b[4]) or debit_ms >= finish then
  return {'outside'}
end
if redis.call('SADD', scored_key, event_id) == 0 then
  return {'dup'}
end
redis.call('HINCRBY', info_key, 'score_' .. side, coins)
redis.call('HINCRBY', info_key, 'v', 1)
redis.call('ZINCRBY', KEYS[3 + side], coins, sender)
redis.call('HSET', names_key, sender, name)
return {'ok'}
