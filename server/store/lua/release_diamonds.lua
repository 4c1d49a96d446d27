-- Move a creator's diamonds whose hold has ended from pending to available.
--
-- KEYS[1] - earnings hash                          ({u:C}:earnings)
-- KEYS[2] - diamond ledger stream                  ({u:C}:earnings:ledger)
-- KEYS[3] - holds zset, event id -> release ms     ({u:C}:holds)
-- KEYS[4] - held diamonds hash, event id -> n      ({u:C}:held)
-- ARGV[1] - now, unix milliseconds
-- ARGV[2] - at most this many holds per call
--
-- Returns the diamonds released now (one ledger entry "release" if any).

local earnings_key = KEYS[1]
local earnings_ledger_key = KEYS[2]
local holds_key = KEYS[3]
local held_key = KEYS[4]
local now = ARGV[1]
local batch = tonumber(ARGV[2])

local due = redis.call('ZRANGEBYSCORE', holds_key, '-inf', now, 'LIMIT', 0, batch)
if #due == 0 then
  return 0
end
local total = 0
for _, event in ipairs(due) do
  total = total + tonumber(redis.call('HGET', held_key, event) or '0')
  redis.call('HDEL', held_key, event)
end
redis.call('ZREM', holds_key, unpack(due))
if total > 0 then
  redis.call('HINCRBY', earnings_key, 'pending', -total)
  redis.call('HINCRBY', earnings_key, 'available', total)
  redis.call('XADD', earnings_ledger_key, '*',
    'kind', 'release', 'pending', -total, 'available', total, 'gifts', #due, 'ts', now)
end
return total
