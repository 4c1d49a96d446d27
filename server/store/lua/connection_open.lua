-- Open a connection slot for a user, unless the user already holds the most allowed.
--
-- A user's slots, on every server process, are one sorted set scored by expiry. The
-- process holding a slot pushes its expiry on with each presence heartbeat
-- (connection_refresh.lua) and removes it when the connection closes, so the slots of a
-- process that crashed stop counting once they expire.
--
-- KEYS[1] - the user's connection slots zset, slot id -> expiry unix ms   ({u:U}:conns)
-- ARGV[1] - the new slot id (unique across processes)
-- ARGV[2] - the most slots the user may hold at once
-- ARGV[3] - slot lifetime without a refresh, milliseconds
--
-- Returns {1, open} when the slot is taken (open counts it), or {0, open} when the user
-- already holds ARGV[2] live slots: then nothing is written but the removal of expired ones.

local slots_key = KEYS[1]
local slot_id = ARGV[1]
local max_slots = tonumber(ARGV[2])
local ttl_ms = tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', '(' .. now)
local open = redis.call('ZCARD', slots_key)
-- A slot id is new to its connection: held already, it is this call's, sent again after its
-- reply was lost.
if redis.call('ZSCORE', slots_key, slot_id) then
  return {1, open}
end
if open >= max_slots then
  return {0, open}
end

redis.call('ZADD', slots_key, now + ttl_ms, slot_id)
-- The set lives as long as its longest-lived slot.
local last = redis.call('ZRANGE', slots_key, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', slots_key, last[2])
return {1, open + 1}
