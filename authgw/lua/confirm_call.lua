-- confirm_call: judge the keys a caller pressed during the phone dialogue of a challenge.
--
-- Confirm mode: 1 verifies, 9 denies, anything else changes nothing. Code mode: the
-- challenge's code verifies; 9 alone denies; any other entry is a wrong code, counted exactly
-- like a wrong TOTP code (count_failure: the challenge's attempts, the customer's consecutive
-- failures, the lock). A "9" is a fraud report whatever became of the challenge since the
-- dialogue opened (cancelled, verified, expired) and whatever lock is in place:
-- `customer.fraud_reported` always; unless ARGV[10] is '0' a `fraud_report` lock (replacing a
-- failures lock; an operator's, self or fraud_report lock is kept) that cancels every pending
-- and verified challenge; the dialogue's challenge is denied only if it is still pending.
--
-- KEYS[1] challenge hash   KEYS[2] customer hash   KEYS[3] open zset   KEYS[4] events stream
-- KEYS[5] lines hash       KEYS[6] the call marker (written by answer_call.lua)
-- KEYS[7..] the customer's open challenges' hashes as the caller read them (only for a "9")
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)   ARGV[2] now (RFC 3339)   ARGV[3] events retention (ms)   ARGV[4] retention (ms)
-- (ARGV[1] and ARGV[2] are the caller's estimate: the script replaces both with the store's TIME, clock_now)
-- ARGV[5] lockout policy (see _lib.lua)   ARGV[6] CallSid   ARGV[7] challenge id   ARGV[8] digits
-- ARGV[9] the entry's number within the call (1, 2, ...): an entry delivered twice is judged once
-- ARGV[10] '1': a fraud report locks the customer
-- ARGV[11..] the open challenges' ids, in KEYS order
--
-- Returns {status, attempts left, locked 0|1, keys to gather, failures before lock} for every
-- judged entry: 'verified', 'denied' (a "9", whether or not the challenge was still pending;
-- locked: whether the customer is locked after the report),
-- 'invalid_input' (confirm mode, not 1 or 9), 'invalid_code', 'challenge_expired',
-- 'challenge_not_pending', 'customer_locked'; {'unknown_call'} (this call opened no
-- dialogue for this challenge), {'retry'} (a "9" whose open set changed since it was read:
-- nothing written), {'replay', the first answer's status, attempts, locked, keys to gather}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
ARGV[1], ARGV[2] = clock_now()  -- the store's now (TIME), not the caller's estimate
local ch, cust, open, events, lines, marker = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now_ms, now_iso, maxlen, keep_ms = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local policy, sid, id, digits, n = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])

local call = redis.call('HMGET', marker, 'challenge_id', 'mode', 'from', 'n', 'result',
                        'attempts', 'locked', 'digits')
if call[1] ~= id or (call[2] ~= 'confirm' and call[2] ~= 'code') then return {'unknown_call'} end
local digits_wanted = tonumber(call[8] or '1')
if n <= tonumber(call[4] or '0') then
  return {'replay', call[5] or '', call[6] or '0', call[7] or '0', digits_wanted}
end
local mode, from = call[2], call[3]

local function answer(result, attempts, locked, before_lock)
  redis.call('HSET', marker, 'n', n, 'result', result, 'attempts', attempts or 0,
             'locked', locked or 0)
  return {result, attempts or 0, locked or 0, digits_wanted, before_lock or 0}
end

local status = settle(ch, open, events, lines, maxlen, now_ms, id)
if redis.call('EXISTS', cust) == 0 then
  if status == 'expired' then return answer('challenge_expired') end
  return answer('challenge_not_pending')
end
local customer_id = redis.call('HGET', ch, 'customer_id')

-- A "9" of a dialogue this call opened: a fraud report, before any state or lock answers.
if digits == '9' then
  if not phone_registered(cust, from) then return {'unknown_call'} end
  local fraud_locks = ARGV[10] == '1'
  local open_keys, open_ids = {}, {}
  for i = 7, #KEYS do
    open_keys[#open_keys + 1] = KEYS[i]
    open_ids[#open_ids + 1] = ARGV[i + 4]
  end
  if fraud_locks and not open_is(open, open_ids) then return {'retry'} end
  if status == 'pending' then
    end_challenge(ch, open, lines, id, 'denied', now_iso, keep_ms)
    redis.call('HSET', ch, 'denied_from', from, 'call_sid', sid)
    add_event(events, maxlen, now_iso, 'challenge.denied', customer_id,
              {'challenge_id', id, 'method', 'callback', 'from', from, 'call_sid', sid,
               'reason', 'fraud_report'})
  end
  redis.call('HINCRBY', cust, 'fraud_reports', 1)
  redis.call('HSET', cust, 'last_fraud_report_at', now_iso)
  add_event(events, maxlen, now_iso, 'customer.fraud_reported', customer_id,
            {'challenge_id', id, 'from', from, 'call_sid', sid})
  local locked = lock_state(cust, events, maxlen, now_ms)
  if not fraud_locks then return answer('denied', 0, locked and 1 or 0) end
  if not locked or redis.call('HGET', cust, 'lock_reason') == 'failures' then
    lock_customer(cust, events, maxlen, now_ms, 'fraud_report', masked_number(from), '', nil,
                  {'challenge_id', id})
  end
  cancel_open(open_keys, open_ids, open, events, lines, maxlen, now_ms, keep_ms, customer_id,
              'customer_locked')
  return answer('denied', 0, 1)
end

if status == 'expired' then return answer('challenge_expired') end
if status ~= 'pending' then return answer('challenge_not_pending') end
if lock_state(cust, events, maxlen, now_ms) then return answer('customer_locked') end
if not phone_registered(cust, from) then return {'unknown_call'} end

local approve = (mode == 'confirm' and digits == '1')
    or (mode == 'code' and digits ~= '' and digits == redis.call('HGET', ch, 'code'))
if approve then
  mark_verified(ch, cust, events, maxlen, now_iso, customer_id, id, 'callback',
                {from = from, sid = sid, mode = mode})
  return answer('verified')
end
if mode == 'confirm' then return answer('invalid_input') end
local attempts, locked, before_lock = count_failure(ch, cust, open, events, lines, maxlen, now_ms,
                                                    now_iso, keep_ms, policy, id, customer_id,
                                                    'callback')
return answer('invalid_code', attempts, locked, before_lock)
