-- An admin marks a requested withdrawal paid, or rejects it (its diamonds return to
-- available). Each withdrawal leaves "requested" once; any later decision changes nothing.
--
-- KEYS[1] - the withdrawal's hash                  ({u:C}:wd:<id>)
-- KEYS[2] - earnings hash                          ({u:C}:earnings)
-- KEYS[3] - diamond ledger stream                  ({u:C}:earnings:ledger)
-- ARGV[1] - "paid" or "rejected"
-- ARGV[2] - admin user id
-- ARGV[3] - now, unix milliseconds
-- ARGV[4] - note (may be empty)
--
-- Returns {"ok", state}, {"already", state} if it was decided before, or {"missing"}.

local w = redis.call('HMGET', KEYS[1], 'state', 'diamonds', 'amount_minor', 'day')
if not w[1] then
  return {'missing'}
end
if w[1] ~= 'requested' then
  return {'already', w[1]}
end
local diamonds = tonumber(w[2])
redis.call('HINCRBY', KEYS[2], 'reserved', -diamonds)
if ARGV[1] == 'paid' then
  redis.call('HINCRBY', KEYS[2], 'withdrawn', diamonds)
  redis.call('XADD', KEYS[3], '*', 'kind', 'withdrawal_paid', 'reserved', -diamonds,
    'withdrawn', diamonds, 'ref', redis.call('HGET', KEYS[1], 'id'), 'ts', ARGV[3])
else
  redis.call('HINCRBY', KEYS[2], 'available', diamonds)
  -- A rejected request no longer counts against that day's payout cap.
  if redis.call('HGET', KEYS[2], 'payout_day') == w[4] then
    redis.call('HINCRBY', KEYS[2], 'payout_today_minor', -tonumber(w[3]))
  end
  redis.call('XADD', KEYS[3], '*', 'kind', 'withdrawal_rejected', 'reserved', -diamonds,
    'available', diamonds, 'ref', redis.call('HGET', KEYS[1], 'id'), 'ts', ARGV[3])
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'decided_ms', ARGV[3], 'decided_by', ARGV[2],
  'note', ARGV[4])
return {'ok', ARGV[1]}
