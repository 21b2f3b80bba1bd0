-- lock_customer: an operator's lock (reason `operator`): the customer is locked until an
-- unlock, and every pending and verified challenge of theirs is cancelled in the same step.
--
-- KEYS[1] customer hash   KEYS[2] open zset   KEYS[3] events stream   KEYS[4] lines hash
-- KEYS[5..] the open challenges' hashes as the caller read them
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)   ARGV[2] events retention (ms)   ARGV[3] retention (ms)
-- ARGV[4] the operator's client name (`by`)   ARGV[5] note ('' for none)
-- ARGV[6..] the open challenges' ids, in KEYS order
--
-- Returns {'ok', customer field, value, ...}, {'customer_not_found'}, or {'retry'} when the
-- open set is not what the caller read (nothing written).
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
local cust, open, events, lines = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
ARGV[1] = clock_ms()  -- the store's now (TIME), not the caller's estimate
local now_ms, maxlen = tonumber(ARGV[1]), ARGV[2]
if redis.call('EXISTS', cust) == 0 then return {'customer_not_found'} end
local ch_keys, ids = {}, {}
for i = 5, #KEYS do
  ch_keys[#ch_keys + 1] = KEYS[i]
  ids[#ids + 1] = ARGV[i + 1]
end
if not open_is(open, ids) then return {'retry'} end
lock_customer(cust, events, maxlen, now_ms, 'operator', ARGV[4], ARGV[5], nil, nil)
cancel_open(ch_keys, ids, open, events, lines, maxlen, now_ms, tonumber(ARGV[3]),
            redis.call('HGET', cust, 'customer_id'), 'customer_locked')
return {'ok', unpack(redis.call('HGETALL', cust))}
