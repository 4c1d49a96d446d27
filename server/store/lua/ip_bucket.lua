-- Take one token from a bucket shared by every server process: a client address's requests,
-- or a user's chat messages (``store.chat``).
--
-- KEYS[1] - the token bucket hash: tokens, ts      ({ip:A}:rate, or {u:U}:chat:rate)
-- ARGV[1] - rate: tokens added per second (may be fractional)
-- ARGV[2] - burst: bucket capacity
--
-- Returns {1, tokens_left} when the request may go ahead (one token taken, tokens_left
-- rounded down), or {0, retry_after_ms} when the bucket holds less than one token: nothing
-- is written then, so a refused request costs the client nothing.
--
-- The bucket is _token_bucket.lua's: timed by the engine's clock, so processes on hosts
-- whose clocks disagree still share one bucket, and gone once it would be full.

local bucket_key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])

--#include _token_bucket

local tokens, now = bucket_read(bucket_key, rate, burst)
if tokens < 1 then
  return {0, bucket_retry_ms(tokens, rate)}
end
return {1, math.floor(bucket_take(bucket_key, tokens, now, rate, burst))}
