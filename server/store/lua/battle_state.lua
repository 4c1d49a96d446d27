-- A battle as its rooms show it: the record, each side's top supporters, the engine's time.
--
-- KEYS[1] - battle record hash ({b:B}:battle)
-- KEYS[2] - side 0's supporters ({b:B}:top:0)
-- KEYS[3] - side 1's supporters ({b:B}:top:1)
-- KEYS[4] - supporters' display names ({b:B}:names)
-- ARGV[1] - how many supporters of each side
--
-- Returns {record (HGETALL, flat), side 0's {id, name, coins, ...}, side 1's, now_ms}, or
-- {} if there is no such battle.

local info_key = KEYS[1]
local names_key = KEYS[4]
local most = tonumber(ARGV[1])

local record = redis.call('HGETALL', info_key)
if #record == 0 then
  return {}
end
local sides = {}
for side = 0, 1 do
  local top = redis.call('ZREVRANGE', KEYS[2 + side], 0, most - 1, 'WITHSCORES')
  local list = {}
  for i = 1, #top, 2 do
    list[#list + 1] = top[i]
    list[#list + 1] = redis.call('HGET', names_key, top[i]) or top[i]
    list[#list + 1] = top[i + 1]
  end
  sides[side + 1] = list
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {record, sides[1], sides[2], tostring(now)}
