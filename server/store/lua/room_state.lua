-- Report a room's live state, and optionally this hub process's viewer count, in one call.
--
-- Presence expires: each hub process writes "<count>:<expires_ms>" under its own node id,
-- and entries past their expiry are dropped when read, so the viewers of a crashed process
-- disappear from the count within the TTL.
--
-- KEYS[1] - room hash                        ({r:R}:room)
-- KEYS[2] - leaderboard zset                 ({r:R}:top)
-- KEYS[3] - display names hash               ({r:R}:names)
-- KEYS[4] - presence hash, node -> "count:expires_ms" ({r:R}:presence)
-- ARGV[1] - node id of the calling process
-- ARGV[2] - its viewer count in this room, or -1 to only read
-- ARGV[3] - presence TTL, milliseconds
-- ARGV[4] - leaderboard size
--
-- Returns {state, viewers, goal, coins, followers, id1, name1, coins1, id2, ...}; state is ""
-- if there is no such room, goal is "" when none is set, followers the creator's follower
-- count as last copied into the room (room_follow.lua).

local room_key = KEYS[1]
local top_key = KEYS[2]
local names_key = KEYS[3]
local presence_key = KEYS[4]
local node_id = ARGV[1]
local mine = tonumber(ARGV[2])
local ttl_ms = tonumber(ARGV[3])
local top_n = tonumber(ARGV[4])

local state = redis.call('HGET', room_key, 'state')
if not state then
  return {''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if state == 'live' and mine > 0 then
  redis.call('HSET', presence_key, node_id, mine .. ':' .. (now + ttl_ms))
elseif mine >= 0 then
  redis.call('HDEL', presence_key, node_id)
end

local viewers = 0
local nodes = redis.call('HGETALL', presence_key)
for i = 1, #nodes, 2 do
  local count, expires = string.match(nodes[i + 1], '^(%d+):(%d+)$')
  if tonumber(expires) < now then
    redis.call('HDEL', presence_key, nodes[i])
  else
    viewers = viewers + tonumber(count)
  end
end

local room = redis.call('HMGET', room_key, 'goal', 'coins', 'followers')
local out = {state, tostring(viewers), room[1] or '', room[2] or '0', room[3] or '0'}
local top = redis.call('ZREVRANGE', top_key, 0, top_n - 1, 'WITHSCORES')
for i = 1, #top, 2 do
  out[#out + 1] = top[i]
  out[#out + 1] = redis.call('HGET', names_key, top[i]) or top[i]
  out[#out + 1] = top[i + 1]
end
return out
