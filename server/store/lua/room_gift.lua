-- Publish one debited gift into its room: totals, leaderboard, combo, and the room event.
-- Runs once per gift event (a second call with the same event id changes nothing), in the
-- room's slot; the sender's debit has already happened in the sender's slot.
--
-- KEYS[1] - room hash                        ({r:R}:room)
-- KEYS[2] - room event stream               ({r:R}:events)
-- KEYS[3] - leaderboard zset, sender -> coins ({r:R}:top)
-- KEYS[4] - display names hash, user -> name ({r:R}:names)
-- KEYS[5] - open combos hash                 ({r:R}:combos)
-- KEYS[6] - published gift event ids set     ({r:R}:published)
-- KEYS[7] - the room's battles, id -> invited ms ({r:R}:battles)
-- KEYS[8] - the latest each battle's window can end ({r:R}:battle:ends)
-- ARGV[1] - gift event id
-- ARGV[2] - sender id
-- ARGV[3] - sender display name
-- ARGV[4] - gift id
-- ARGV[5] - count
-- ARGV[6] - coins the gift cost
-- ARGV[7] - 1 if the gift is streakable, else 0
-- ARGV[8] - combo window, milliseconds
-- ARGV[9] - approximate stream length bound (XADD MAXLEN ~)
-- ARGV[10] - sender's balance after the debit, or "" if unknown
-- ARGV[11] - the room's wake channel ({r:R}:wake): an empty message goes out on it
--            (SPUBLISH) when events are added, for the hubs that follow the room on a cluster
-- ARGV[12] - the debit's time (engine ms of the sender's ledger entry), or "" if unknown
--
-- Returns {status, combo, ts, battle}: status "ok" (event added), "dup" (already published) or
-- "ended" (the room ended after the gift was accepted: the creator is still credited through
-- the outbox, but the finished live's totals and stream are left as they were); battle is
-- the room's battle the debit may fall in (the last registered at or before it, unless the
-- debit is past the latest its window can end, see room_battle.lua), or "": whatever the status, so a delivery repeated after a crash still
-- counts the gift there (battle_score.lua decides, once).
--
-- The combo rule: a streakable gift continues the sender's open combo if it is the same gift
-- and arrives within the window of the previous one; the event's combo is the running total
-- of counts. Anything else from that sender first closes the open combo with a combo_end
-- event. combo_expire.lua closes combos whose sender simply stopped.

local room_key = KEYS[1]
local events_key = KEYS[2]
local top_key = KEYS[3]
local names_key = KEYS[4]
local combos_key = KEYS[5]
local published_key = KEYS[6]
local event_id = ARGV[1]
local sender = ARGV[2]
local name = ARGV[3]
local gift = ARGV[4]
local count = tonumber(ARGV[5])
local coins = tonumber(ARGV[6])
local streakable = ARGV[7]
local window_ms = tonumber(ARGV[8])
local maxlen = ARGV[9]
local balance = ARGV[10]
local wake_channel = ARGV[11]
local debit_ms = ARGV[12]

local battle = ''
if debit_ms ~= '' then
  battle = redis.call('ZREVRANGEBYSCORE', KEYS[7], debit_ms, '-inf', 'LIMIT', 0, 1)[1] or ''
  if battle ~= '' then
    local window_end = redis.call('ZSCORE', KEYS[8], battle)
    if window_end and tonumber(debit_ms) >= tonumber(window_end) then
      battle = ''
    end
  end
end
if redis.call('HGET', room_key, 'state') ~= 'live' then
  return {'ended', '0', '0', battle}
end
if redis.call('SADD', published_key, event_id) == 0 then
  return {'dup', '0', '0', battle}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('HINCRBY', room_key, 'coins', coins)
redis.call('ZINCRBY', top_key, coins, sender)
redis.call('HSET', names_key, sender, name)

local combo = count
local open = redis.call('HGET', combos_key, sender)
if open then
  local open_gift, open_combo, open_ts = string.match(open, '^([^|]*)|(%d+)|(%d+)$')
  if streakable == '1' and open_gift == gift and now - tonumber(open_ts) <= window_ms then
    combo = tonumber(open_combo) + count
  else
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
      't', 'combo_end', 's', sender, 'n', name, 'g', open_gift, 'k', open_combo, 'ts', now)
  end
end
if streakable == '1' then
  redis.call('HSET', combos_key, sender, gift .. '|' .. combo .. '|' .. now)
elseif open then
  redis.call('HDEL', combos_key, sender)
end

redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
  't', 'gift', 'e', event_id, 's', sender, 'n', name, 'g', gift, 'c', count, 'k', combo,
  'ts', now, 'b', balance)
redis.call('SPUBLISH', wake_channel, '')
return {'ok', tostring(combo), tostring(now), battle}
