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

local earnings_key = KEYS[1]
local earnings_ledger_key = KEYS[2]
local withdrawal_key = KEYS[3]
local idem_key = KEYS[4]
local wallet_key = KEYS[5]
local withdrawal_id = ARGV[1]
local requested = ARGV[2]
local value = tonumber(ARGV[3])
local currency = ARGV[4]
local minimum = ARGV[5]
local cap_minor = ARGV[6]
local day = ARGV[7]
local now = ARGV[8]
local idempotency_ttl_s = ARGV[9]

local earlier = redis.call('GET', idem_key)
if earlier then
  local id, diamonds = string.match(earlier, '^([^|]+)|(%d+)$')
  if diamonds == requested then
    return {'replay', id}
  end
  return {'mismatch'}
end
if redis.call('HGET', wallet_key, 'frozen') == '1' then
  return {'frozen'}
end
local diamonds = tonumber(requested)
if diamonds < tonumber(minimum) then
  return {'below_min', minimum}
end
local e = redis.call('HMGET', earnings_key, 'available', 'payout_day', 'payout_today_minor')
local available = tonumber(e[1] or '0')
if available < diamonds then
  return {'insufficient', tostring(available)}
end
local used = 0
if e[2] == day then
  used = tonumber(e[3] or '0')
end
if used + value > tonumber(cap_minor) then
  return {'cap', tostring(used), cap_minor}
end

redis.call('HINCRBY', earnings_key, 'available', -diamonds)
redis.call('HINCRBY', earnings_key, 'reserved', diamonds)
redis.call('HSET', earnings_key, 'payout_day', day, 'payout_today_minor', used + value)
redis.call('HSET', withdrawal_key, 'id', withdrawal_id, 'state', 'requested', 'diamonds', diamonds,
  'amount_minor', value, 'currency', currency, 'day', day, 'requested_ms', now)
redis.call('XADD', earnings_ledger_key, '*',
  'kind', 'withdrawal', 'available', -diamonds, 'reserved', diamonds,
  'ref', withdrawal_id, 'amount_minor', value, 'ts', now)
redis.call('SET', idem_key, withdrawal_id .. '|' .. diamonds, 'EX', idempotency_ttl_s)
return {'ok', withdrawal_id}
