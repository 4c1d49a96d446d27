-- A creator's one battle at a time: claim, release or extend the creator's battle pointer.
--
-- KEYS[1] - the creator's battle pointer ({u:C}:battle)
-- ARGV[1] - "claim" (set it if free), "release" (delete it if it names this battle) or
--           "extend" (renew its lifetime if it names this battle)
-- ARGV[2] - battle id
-- ARGV[3] - lifetime, milliseconds (claim, extend): past the latest end the battle can have,
--           so a pointer its battle never released frees the creator by itself
--
-- Returns {"ok"}, {"busy", battle id} (claim: the creator already has a battle) or
-- {"gone"} (release, extend: the pointer names another battle or none).

local pointer_key = KEYS[1]
local mode = ARGV[1]
local battle_id = ARGV[2]
local lifetime_ms = ARGV[3]

if mode == 'claim' then
  if redis.call('SET', pointer_key, battle_id, 'NX', 'PX', lifetime_ms) then
    return {'ok'}
  end
  local holder = redis.call('GET', pointer_key)
  -- A battle id is new to its claim: naming it, the pointer is this claim's, sent again
  -- after its reply was lost.
  if holder == battle_id then
    return {'ok'}
  end
  return {'busy', holder}
end
if redis.call('GET', pointer_key) ~= battle_id then
  return {'gone'}
end
if mode == 'release' then
  redis.call('DEL', pointer_key)
else
  redis.call('PEXPIRE', pointer_key, lifetime_ms)
end
return {'ok'}
