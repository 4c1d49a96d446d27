-- Keep the connection slots one process holds for a user alive for another lifetime.
--
-- Slots are added back if they had expired meanwhile (an engine outage longer than their
-- lifetime), so a connection that stayed open is counted again.
--
-- KEYS[1] - the user's connection slots zset, slot id -> expiry unix ms   ({u:U}:conns)
-- ARGV[1] - slot lifetime without a refresh, milliseconds
-- ARGV[2..n] - the slot ids the calling process holds for this user
--
-- Returns the number of the user's live slots, on every process.

local slots_key = KEYS[1]
local ttl_ms = tonumber(ARGV[1])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + ttl_ms

redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', '(' .. now)
for i = 2, #ARGV do
  redis.call('ZADD', slots_key, expires, ARGV[i])
end
local last = redis.call('ZRANGE', slots_key, -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIREAT', slots_key, last[2])
end
return redis.call('ZCARD', slots_key)
