-- Take one request token from a client address's bucket, shared by every server process.
--
-- KEYS[1] - the address's token bucket hash: tokens, ts      ({ip:A}:rate)
-- ARGV[1] - rate: tokens added per second (may be fractional)
-- ARGV[2] - burst: bucket capacity
--
-- Returns {1, tokens_left} when the request may go ahead (one token taken, tokens_left
-- rounded down), or {0, retry_after_ms} when the bucket holds less than one token: nothing
-- is written then, so a refused request costs the client nothing.
--
-- The engine's clock times the refill, so processes on hosts whose clocks disagree still
-- share one bucket. A full bucket is the same as no bucket: the key expires once it would
-- have refilled, and an address that stays away leaves nothing behind.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])

local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = burst
if bucket[1] then
  local elapsed = math.max(0, now - tonumber(bucket[2]))
  tokens = math.min(burst, tonumber(bucket[1]) + elapsed * rate / 1000)
end
if tokens < 1 then
  return {0, math.ceil((1 - tokens) * 1000 / rate)}
end

tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {1, math.floor(tokens)}
