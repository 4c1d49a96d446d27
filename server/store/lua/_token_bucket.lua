-- The token bucket, written once and included by gift_debit.lua and ip_bucket.lua (a line
-- "--#include _token_bucket" in a script is replaced by this file when it is loaded; see
-- store/scripts.py). It defines local functions only: no KEYS, ARGV or return of its own.
--
-- A bucket is a hash {tokens, ts}: it refills continuously at `rate` tokens a second up to
-- `burst`, and each call that goes ahead takes one token. The engine's clock (TIME) times
-- the refill, never a caller's: a bucket lives in one slot, so every server process that
-- takes from it reads the same clock, however the hosts' clocks disagree. A full bucket is
-- the same as no bucket: the key expires once it would have refilled, and a caller that
-- stays away leaves nothing behind.

-- The bucket at `key` now: its tokens (fractional) and the engine time they are counted at,
-- unix milliseconds. Reads only, so a caller refused later writes nothing.
local function bucket_read(key, rate, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local bucket = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = burst
  if bucket[1] then
    local elapsed = math.max(0, now - tonumber(bucket[2]))
    tokens = math.min(burst, tonumber(bucket[1]) + elapsed * rate / 1000)
  end
  return tokens, now
end

-- Milliseconds until a bucket holding `tokens` (less than one) holds one.
local function bucket_retry_ms(tokens, rate)
  return math.ceil((1 - tokens) * 1000 / rate)
end

-- Take one token from the bucket at `key`, read as holding `tokens` at `now`; the tokens left.
local function bucket_take(key, tokens, now, rate, burst)
  local left = tokens - 1
  redis.call('HSET', key, 'tokens', tostring(left), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil((burst - left) * 1000 / rate) + 1000)
  return left
end
