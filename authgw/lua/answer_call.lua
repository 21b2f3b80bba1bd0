-- answer_call: judge an inbound call for one customer: does it approve (reject mode) or
-- open the phone dialogue (confirm and code modes) for the challenge holding the number
-- dialled? Everything the webhook read beforehand (phone index, line holder) was a hint;
-- the truth is re-checked here, in one step.
--
-- KEYS[1] customer hash   KEYS[2] open zset   KEYS[3] events stream   KEYS[4] lines hash
-- KEYS[5] the call marker (hash: this CallSid as seen by this customer)
-- KEYS[6] the challenge hash the lines hint named (only when ARGV[9] ~= '')
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)   ARGV[2] now (RFC 3339)   ARGV[3] events retention (ms)
-- (ARGV[1] and ARGV[2] are the caller's estimate: the script replaces both with the store's TIME, clock_now)
-- ARGV[4] retention (ms, unused: nothing ends here)   ARGV[5] call marker TTL (ms)   ARGV[6] CallSid
-- ARGV[7] From (E.164)     ARGV[8] To (E.164)   ARGV[9] challenge id the hint named ('' none)
-- ARGV[10] when the call was first seen (ms): a challenge created later is never approved
-- ARGV[11] confirm on the phone from this amount up in reject mode (0: never)
-- ARGV[12] StirVerstat ('' none)
-- ARGV[13] why the attestation is refused ('' accepted; judged by callerid.attestation_refusal)
-- ARGV[14] the new-phone hold (ms; 0 none: phone_on_hold in _lib.lua)
-- ARGV[15] '1' when the call is ambiguous (its phone is shared and another customer holds
--          the number too, calls.py): it is only recorded, as `call.unmatched` ambiguous_caller
--
-- Returns
--   {'stranger'}                   the customer is gone or no longer has this phone: nothing
--                                  is written (the index hint was stale)
--   {'retry'}                      the number's holder changed since the hint was read
--   {'unmatched', reason}          `call.unmatched` written; nothing else changed
--   {'held', challenge id}         the phone is younger than the hold: `call.unmatched`
--                                  (reason new_phone_hold) written; the caller is told why
--   {'verified', challenge id}     reject mode: verified by this call
--   {'gather', challenge id, mode, document JSON, keys to gather}   confirm or code mode: ask
--                                  the caller (1 key in confirm mode, the code's length in code mode)
--   {'replay', outcome, challenge id}   this CallSid was already judged for this customer
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
ARGV[1], ARGV[2] = clock_now()  -- the store's now (TIME), not the caller's estimate
local cust, open, events, lines, marker = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now_ms, now_iso, maxlen = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local marker_ttl = tonumber(ARGV[5])
local sid, from, to, hint = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local first_ms, confirm_above = tonumber(ARGV[10]), tonumber(ARGV[11])
local stir, attestation_refused, ambiguous = ARGV[12], ARGV[13], ARGV[15] == '1'
local ch = nil
if hint ~= '' then ch = KEYS[6] end

-- The same CallSid again: the effect of one call. A dialogue still open is offered again.
if redis.call('EXISTS', marker) == 1 then
  local seen = redis.call('HMGET', marker, 'outcome', 'challenge_id', 'mode', 'digits')
  if seen[1] == 'gather' and ch and seen[2] == hint
      and settle(ch, open, events, lines, maxlen, now_ms, hint) == 'pending' then
    return {'gather', hint, seen[3], redis.call('HGET', ch, 'doc'), tonumber(seen[4] or '1')}
  end
  return {'replay', seen[1] or '', seen[2] or ''}
end

if redis.call('EXISTS', cust) == 0 then return {'stranger'} end
if not phone_registered(cust, from) then return {'stranger'} end

-- The number's holder is the challenge it was shown with, until that one's expires_at,
-- however it ended (free_line in _lib.lua): a call reaches that challenge or none.
local _, holder = line_holder(redis.call('HGET', lines, to))
if (holder or '') ~= hint then return {'retry'} end

local customer_id = redis.call('HGET', cust, 'customer_id')
local function judged(outcome, id, mode, digits)
  redis.call('HSET', marker, 'outcome', outcome, 'challenge_id', id or '', 'mode', mode or '',
             'digits', digits or 0, 'from', from, 'to', to, 'at', now_iso, 'n', 0)
  redis.call('PEXPIRE', marker, marker_ttl)
end
local function unmatched(reason, id)
  judged('unmatched', id)
  add_event(events, maxlen, now_iso, 'call.unmatched', customer_id,
            {'challenge_id', id, 'from', from, 'to', to, 'call_sid', sid, 'reason', reason,
             'stir_verstat', stir})
  return {'unmatched', reason}
end

-- A call that another customer's challenge may have prompted approves neither (not this one).
if ambiguous then return unmatched('ambiguous_caller', hint) end
if lock_state(cust, events, maxlen, now_ms) then return unmatched('customer_locked', hint) end
if attestation_refused ~= '' then return unmatched(attestation_refused, hint) end
if not ch then return unmatched('no_challenge') end
local status = settle(ch, open, events, lines, maxlen, now_ms, hint)
if status == 'expired' then return unmatched('challenge_expired', hint) end
if status ~= 'pending' then return unmatched('challenge_not_pending', hint) end
if redis.call('HGET', ch, 'line') ~= to then return unmatched('wrong_number', hint) end
if tonumber(redis.call('HGET', ch, 'created_ms')) > first_ms then
  return unmatched('challenge_after_call', hint)
end
if not has_method(ch, 'callback') then return unmatched('method_unavailable', hint) end
if factor_done(ch, 'callback') then return unmatched('challenge_not_pending', hint) end
if phone_on_hold(cust, from, tonumber(ARGV[14]), now_ms) then
  unmatched('new_phone_hold', hint)
  redis.call('HSET', marker, 'outcome', 'held')
  return {'held', hint}
end

local doc_json = redis.call('HGET', ch, 'doc')
local doc = cjson.decode(doc_json)
local mode = doc['callback_mode'] or 'reject'
if mode == 'reject' and confirm_above > 0 and tonumber(doc['amount']) >= confirm_above then
  mode = 'confirm'
end
-- A dual-factor challenge's call reads the transaction back whatever the mode: a caller ID
-- alone is never one of two factors.
if mode == 'reject' and redis.call('HGET', ch, 'required') then mode = 'confirm' end
if mode == 'code' and not redis.call('HGET', ch, 'code') then mode = 'confirm' end

add_event(events, maxlen, now_iso, 'call.received', customer_id,
          {'challenge_id', hint, 'from', from, 'to', to, 'call_sid', sid, 'mode', mode,
           'stir_verstat', stir})
if mode == 'reject' then
  mark_verified(ch, cust, events, maxlen, now_iso, customer_id, hint, 'callback', {from = from, sid = sid})
  judged('verified', hint, mode)
  return {'verified', hint}
end
local digits = 1
if mode == 'code' then digits = string.len(redis.call('HGET', ch, 'code')) end
redis.call('HSET', ch, 'call_sid', sid)
judged('gather', hint, mode, digits)
return {'gather', hint, mode, doc_json, digits}
