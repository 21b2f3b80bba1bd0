-- totp_confirm: activate the pending TOTP secret with a code from it. A wrong code counts as
-- a failure like any other; a right one does not reset the failure count (a new secret must
-- not, NIST SP 800-63B-4), and its step is recorded so the code cannot be replayed.
--
-- KEYS[1] customer hash   KEYS[2] events stream
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (RFC 3339)  ARGV[2] events retention (ms)   ARGV[3] lockout policy (see _lib.lua)
-- ARGV[4] the pending ciphertext the caller computed codes with
-- ARGV[5] comma-separated time steps whose code matched ('' for none)
-- ARGV[6] the client confirming (`by` of `totp.enrolled`)
--
-- Returns {'ok', customer field, value, ...}, {'invalid_code', failures, locked 0|1, failures before lock}, {'stale'}, {'customer_not_found'},
-- {'customer_locked'}, {'no_pending_enrolment'}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
local now_ms = clock_ms()  -- the store's now (TIME), not the caller's estimate
ARGV[1] = iso_from_ms(now_ms)
local cust, events = KEYS[1], KEYS[2]
local now_iso, maxlen = ARGV[1], ARGV[2]
if redis.call('EXISTS', cust) == 0 then return {'customer_not_found'} end
local customer_id = redis.call('HGET', cust, 'customer_id')
if lock_state(cust, events, maxlen, now_ms) then return {'customer_locked'} end
local pending = redis.call('HGET', cust, 'totp_pending') or ''
if pending == '' then return {'no_pending_enrolment'} end
if pending ~= ARGV[4] then return {'stale'} end
local step = fresh_step(cust, ARGV[5])
if step then
  redis.call('HSET', cust, 'totp', pending, 'last_step', step)
  redis.call('HDEL', cust, 'totp_pending')
  add_event(events, maxlen, now_iso, 'totp.enrolled', customer_id, {'method', 'totp', 'by', ARGV[6]})
  return {'ok', unpack(redis.call('HGETALL', cust))}
end
local locked, before_lock = count_lock_failure(cust, events, maxlen, now_ms, ARGV[3],
                                              {'method', 'totp'})
return {'invalid_code', tonumber(redis.call('HGET', cust, 'failed')), locked and 1 or 0, before_lock}
