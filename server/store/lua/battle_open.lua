-- Open a battle: the invitation, in the battle's own slot.
--
-- KEYS[1] - battle record hash ({b:B}:battle)
-- ARGV[1] - inviter (side 0)        ARGV[2] - opponent (side 1)
-- ARGV[3] - inviter's live room     ARGV[4] - opponent's live room
-- ARGV[5] - inviter's display name  ARGV[6] - opponent's display name
-- ARGV[7] - duration, milliseconds
-- ARGV[8] - the invitation's time (engine ms), which both rooms registered it under
--           (room_battle.lua) before this: before it can start
--
-- Returns {"ok"}.

local info_key = KEYS[1]

redis.call('HSET', info_key,
  'inviter', ARGV[1], 'opponent', ARGV[2], 'room_0', ARGV[3], 'room_1', ARGV[4],
  'name_0', ARGV[5], 'name_1', ARGV[6], 'duration_ms', ARGV[7], 'state', 'invited',
  'invited_ms', ARGV[8], 'score_0', 0, 'score_1', 0, 'v', 0)
return {'ok'}
