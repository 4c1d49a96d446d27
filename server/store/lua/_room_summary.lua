-- A live's figures, written once and included by room_end.lua (which keeps them in the room
-- hash when the live ends) and room_summary.lua (which reads them); see store/scripts.py for
-- "--#include". It defines local functions only: no KEYS, ARGV or return of its own.
--
-- The figures are {coins, likes, gifts, gifters, new_followers, id1, name1, coins1, ...}:
-- the room's gift coins and likes (room hash), the gift events published into it (the
-- published set), the distinct senders (leaderboard members), the users whose follow it
-- announced (the followed set), and its top three gifters with their names and coins. A
-- live's sets expire a while after its end, so its figures are kept in the room hash
-- ("summary", JSON) when it ends: nothing changes a finished live's figures after that.

local function room_figures(room_key, top_key, names_key, published_key, followed_key)
  local kept = redis.call('HGET', room_key, 'summary')
  if kept then
    return cjson.decode(kept)
  end
  local room = redis.call('HMGET', room_key, 'coins', 'likes')
  local figures = {
    tonumber(room[1] or '0'),
    tonumber(room[2] or '0'),
    redis.call('SCARD', published_key),
    redis.call('ZCARD', top_key),
    redis.call('SCARD', followed_key),
  }
  local top = redis.call('ZREVRANGE', top_key, 0, 2, 'WITHSCORES')
  for i = 1, #top, 2 do
    figures[#figures + 1] = top[i]
    figures[#figures + 1] = redis.call('HGET', names_key, top[i]) or top[i]
    figures[#figures + 1] = tonumber(top[i + 1])
  end
  return figures
end
