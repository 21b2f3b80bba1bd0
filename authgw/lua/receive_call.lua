-- receive_call: the first sight of a CallSid, kept in the call's own record.
--
-- The record fixes, once, when the call was first seen, the numbers it carried and the
-- customers it may speak for (the phone index as read then). A second delivery of the same
-- CallSid reads the record instead of the index, so it can only reach the customers the first
-- one could, and only challenges created before the call (see answer_call.lua). A record
-- holding only status callbacks (call_status.lua; Twilio may send them first) is not a sight
-- of the call: this delivery is the first.
--
-- KEYS[1] the call record (hash, its own slot)
-- ARGV[1] now (ms)   ARGV[2] now (RFC 3339)   ARGV[3] record TTL (ms)
-- (ARGV[1] and ARGV[2] are the caller's estimate: the script replaces both with the store's TIME, clock_now)
-- ARGV[4] From (E.164 or the raw withheld value)   ARGV[5] To   ARGV[6] StirVerstat ('' none)
-- ARGV[7] candidate customers, comma-separated ('' none)
-- ARGV[8] outcome already known ('withheld', 'unmatched', '' when the customers decide)
-- ARGV[9] reason for that outcome ('' none)
--
-- Returns {'new' | 'seen', first seen (ms), From, To, candidates, outcome}.
ARGV[1], ARGV[2] = clock_now()  -- the store's now (TIME), not the caller's estimate
local rec = KEYS[1]
if redis.call('HEXISTS', rec, 'first_ms') == 1 then
  local v = redis.call('HMGET', rec, 'first_ms', 'from', 'to', 'candidates', 'outcome')
  return {'seen', v[1] or '0', v[2] or '', v[3] or '', v[4] or '', v[5] or ''}
end
redis.call('HSET', rec, 'first_ms', ARGV[1], 'received_at', ARGV[2], 'from', ARGV[4],
           'to', ARGV[5], 'candidates', ARGV[7], 'outcome', ARGV[8])
if ARGV[6] ~= '' then redis.call('HSET', rec, 'stir_verstat', ARGV[6]) end
if ARGV[9] ~= '' then redis.call('HSET', rec, 'reason', ARGV[9]) end
redis.call('PEXPIRE', rec, tonumber(ARGV[3]))
return {'new', ARGV[1], ARGV[4], ARGV[5], ARGV[7], ARGV[8]}
