-- Write a pending order with its lifetime, unless its owner already holds the most pending
-- orders allowed; in the owner's slot, so that the count and the write are one step.
--
-- KEYS[1] - order hash                   ({u:U}:order:<order_id>)
-- KEYS[2] - the user's pending orders    ({u:U}:orders:pending)
-- ARGV[1] - order id
-- ARGV[2] - now, unix milliseconds
-- ARGV[3] - lifetime of a pending order, milliseconds
-- ARGV[4] - the most pending orders one user may hold
-- ARGV[5..] - the order's fields and values
--
-- Returns one of:
--   {"ok", expires_ms}       written, expiring at expires_ms, and counted
--   {"too_many", pending}    the user holds `pending` unexpired pending orders: nothing written
--   {"exists", expires_ms}   an order of this id exists, nothing written: a provider's order id
--                            submitted again, or this very call sent again after its reply was
--                            lost; expires_ms while the order is pending, false once it is paid

local order_key = KEYS[1]
local pending_key = KEYS[2]
local order_id = ARGV[1]
local now_ms = tonumber(ARGV[2])
local ttl_ms = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])

if redis.call('EXISTS', order_key) == 1 then
  return {'exists', redis.call('ZSCORE', pending_key, order_id)}
end
redis.call('ZREMRANGEBYSCORE', pending_key, '-inf', now_ms)
local pending = redis.call('ZCARD', pending_key)
if pending >= cap then
  return {'too_many', pending}
end
local expires_ms = now_ms + ttl_ms
redis.call('HSET', order_key, unpack(ARGV, 5))
redis.call('PEXPIRE', order_key, ttl_ms)
redis.call('ZADD', pending_key, expires_ms, order_id)
-- The set goes when its last order would: a lifetime shortened since the others were
-- written must not cut theirs.
local latest = redis.call('ZRANGE', pending_key, 0, 0, 'REV', 'WITHSCORES')
redis.call('PEXPIREAT', pending_key, latest[2])
return {'ok', expires_ms}
