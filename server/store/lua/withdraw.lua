-- Request a withdrawal: reserve available diamonds for a payout, atomically, once per key.
--
-- KEYS[1] - earnings hash                          ({u:C}:earnings)
-- KEYS[2] - diamond ledger stream                  ({u:C}:earnings:ledger)
-- KEYS[3] - the new withdrawal's hash              ({u:C}:wd:<id>)
-- KEYS[4] - idempotency key -> "id|diamonds"      ({u:C}:wdkey:<key>)
-- KEYS[5] - wallet hash (for the frozen flag)      ({u:C}:wallet)
-- ARGV[1] - new withdrawal id
-- ARGV[2] - diamonds requested
-- ARGV[3] - their cash value, minor units
-- ARGV[4] - currency of the payout
-- ARGV[5] - minimum diamonds per withdrawal
-- ARGV[6] - daily payout cap, minor units
-- ARGV[7] - UTC day number of now
-- ARGV[8] - now, unix milliseconds
-- ARGV[9] - idempotency record lifetime, seconds
--
-- Returns one of:
--   {"ok", id}                         reserved now
--   {"replay", id}                     this key requested the same amount before
--   {"mismatch"}                       this key was used for another amount
--   {"frozen"}                         the account is frozen
--   {"below_min", minimum}
--   {"insufficient", available}
--   {"cap", used_today_minor, cap_minor}

local earlier = redis.call('GET', KEYS[4])
if earlier then
  local id, diamonds = string.match(earlier, '^([^|]+)|(%d+)$')
  if diamonds == ARGV[2] then
    return {'replay', id}
  end
  return {'mismatch'}
end
if redis.call('HGET', KEYS[5], 'frozen') == '1' then
  return {'frozen'}
end
local diamonds = tonumber(ARGV[2])
if diamonds < tonumber(ARGV[5]) then
  return {'below_min', ARGV[5]}
end
local e = redis.call('HMGET', KEYS[1], 'available', 'payout_day', 'payout_today_minor')
local available = tonumber(e[1] or '0')
if available < diamonds then
  return {'insufficient', tostring(available)}
end
local used = 0
if e[2] == ARGV[7] then
  used = tonumber(e[3] or '0')
end
local value = tonumber(ARGV[3])
if used + value > tonumber(ARGV[6]) then
  return {'cap', tostring(used), ARGV[6]}
end

redis.call('HINCRBY', KEYS[1], 'available', -diamonds)
redis.call('HINCRBY', KEYS[1], 'reserved', diamonds)
redis.call('HSET', KEYS[1], 'payout_day', ARGV[7], 'payout_today_minor', used + value)
redis.call('HSET', KEYS[3], 'id', ARGV[1], 'state', 'requested', 'diamonds', diamonds,
  'amount_minor', value, 'currency', ARGV[4], 'day', ARGV[7], 'requested_ms', ARGV[8])
redis.call('XADD', KEYS[2], '*', 'kind', 'withdrawal', 'available', -diamonds, 'reserved', diamonds,
  'ref', ARGV[1], 'amount_minor', value, 'ts', ARGV[8])
redis.call('SET', KEYS[4], ARGV[1] .. '|' .. diamonds, 'EX', ARGV[9])
return {'ok', ARGV[1]}
