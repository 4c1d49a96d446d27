-- A live's figures for its summary, live or ended (_room_summary.lua says which they are).
--
-- KEYS[1] - room hash                        ({r:R}:room)
-- KEYS[2] - leaderboard zset                 ({r:R}:top)
-- KEYS[3] - display names hash               ({r:R}:names)
-- KEYS[4] - published gift event ids set     ({r:R}:published)
-- KEYS[5] - followers announced this live     ({r:R}:followed)
--
-- Returns {"ok", coins, likes, gifts, gifters, new_followers, id1, name1, coins1, ...}, or
-- {"missing"} if there is no such room.

local room_key = KEYS[1]
local top_key = KEYS[2]
local names_key = KEYS[3]
local published_key = KEYS[4]
local followed_key = KEYS[5]

--#include _room_summary

if redis.call('EXISTS', room_key) == 0 then
  return {'missing'}
end
local figures = room_figures(room_key, top_key, names_key, published_key, followed_key)
table.insert(figures, 1, 'ok')
return figures
