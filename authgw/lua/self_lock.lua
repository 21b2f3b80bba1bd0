-- self_lock: a customer stops their own internet banking by phone (IBロック): the caller,
-- from a phone registered to this customer, pressed 1 on a self-lock number. The customer is
-- locked (reason `self_lock`, until an operator unlocks) and every pending and verified
-- challenge of theirs is cancelled, in one step. The phone index that named this customer was
-- a hint: the phone is re-checked here.
--
-- KEYS[1] customer hash   KEYS[2] open zset   KEYS[3] events stream   KEYS[4] lines hash
-- KEYS[5] the call marker (this CallSid as seen by this customer)
-- KEYS[6..] the open challenges' hashes as the caller read them
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)   ARGV[2] events retention (ms)   ARGV[3] retention (ms)   ARGV[4] marker TTL (ms)
-- ARGV[5] CallSid    ARGV[6] From (E.164)   ARGV[7] To (E.164)
-- ARGV[8..] the open challenges' ids, in KEYS order
--
-- Returns {'locked'}, {'replay'} (this CallSid already locked this customer), {'stranger'}
-- (the customer is gone or no longer has this phone: nothing written), {'retry'} (the open set
-- is not what the caller read: nothing written).
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
local cust, open, events, lines, marker = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
ARGV[1] = clock_ms()  -- the store's now (TIME), not the caller's estimate
local now_ms, maxlen = tonumber(ARGV[1]), ARGV[2]
local sid, from, to = ARGV[5], ARGV[6], ARGV[7]
if redis.call('EXISTS', marker) == 1 then return {'replay'} end
if redis.call('EXISTS', cust) == 0 then return {'stranger'} end
if not phone_registered(cust, from) then return {'stranger'} end
local ch_keys, ids = {}, {}
for i = 6, #KEYS do
  ch_keys[#ch_keys + 1] = KEYS[i]
  ids[#ids + 1] = ARGV[i + 2]
end
if not open_is(open, ids) then return {'retry'} end
local customer_id = redis.call('HGET', cust, 'customer_id')
local now_iso = iso_from_ms(now_ms)
add_event(events, maxlen, now_iso, 'customer.self_locked', customer_id,
          {'from', from, 'to', to, 'call_sid', sid})
lock_customer(cust, events, maxlen, now_ms, 'self_lock', masked_number(from), '', nil,
              {'call_sid', sid})
cancel_open(ch_keys, ids, open, events, lines, maxlen, now_ms, tonumber(ARGV[3]), customer_id,
            'customer_locked')
redis.call('HSET', marker, 'outcome', 'self_locked', 'from', from, 'to', to, 'at', now_iso)
redis.call('PEXPIRE', marker, tonumber(ARGV[4]))
return {'locked'}
