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
-- ARGV[5] - this call's id (new to it), kept with the decision
--
-- Returns {"ok", state} (decided now, or by this very call, ARGV[5], sent again after its
-- reply was lost), {"already", state} if it was decided before, or {"missing"}.

local withdrawal_key = KEYS[1]
local earnings_key = KEYS[2]
local earnings_ledger_key = KEYS[3]
local decision = ARGV[1]
local admin_id = ARGV[2]
local now = ARGV[3]
local note = ARGV[4]
local call_id = ARGV[5]

local w = redis.call('HMGET', withdrawal_key, 'state', 'diamonds', 'amount_minor', 'day')
if not w[1] then
  return {'missing'}
end
if w[1] ~= 'requested' then
  if redis.call('HGET', withdrawal_key, 'decided_call') == call_id then
    return {'ok', w[1]}
  end
  return {'already', w[1]}
end
local diamonds = tonumber(w[2])
redis.call('HINCRBY', earnings_key, 'reserved', -diamonds)
if decision == 'paid' then
  redis.call('HINCRBY', earnings_key, 'withdrawn', diamonds)
  redis.call('XADD', earnings_ledger_key, '*', 'kind', 'withdrawal_paid', 'reserved', -diamonds,
    'withdrawn', diamonds, 'ref', redis.call('HGET', withdrawal_key, 'id'), 'ts', now)
else
  redis.call('HINCRBY', earnings_key, 'available', diamonds)
  -- A rejected request no longer counts against that day's payout cap.
  if redis.call('HGET', earnings_key, 'payout_day') == w[4] then
    redis.call('HINCRBY', earnings_key, 'payout_today_minor', -tonumber(w[3]))
  end
  redis.call('XADD', earnings_ledger_key, '*', 'kind', 'withdrawal_rejected', 'reserved', -diamonds,
    'available', diamonds, 'ref', redis.call('HGET', withdrawal_key, 'id'), 'ts', now)
end
redis.call('HSET', withdrawal_key, 'state', decision, 'decided_ms', now, 'decided_by', admin_id,
  'note', note, 'decided_call', call_id)
return {'ok', decision}
