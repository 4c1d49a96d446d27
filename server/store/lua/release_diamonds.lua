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

local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due == 0 then
  return 0
end
local total = 0
for _, event in ipairs(due) do
  total = total + tonumber(redis.call('HGET', KEYS[4], event) or '0')
  redis.call('HDEL', KEYS[4], event)
end
redis.call('ZREM', KEYS[3], unpack(due))
if total > 0 then
  redis.call('HINCRBY', KEYS[1], 'pending', -total)
  redis.call('HINCRBY', KEYS[1], 'available', total)
  redis.call('XADD', KEYS[2], '*', 'kind', 'release', 'pending', -total, 'available', total,
    'gifts', #due, 'ts', ARGV[1])
end
return total
