-- totp_remove: erase the customer's TOTP secrets, active and pending.
--
-- KEYS[1] customer hash   KEYS[2] events stream
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (RFC 3339)  ARGV[2] events retention (ms)   ARGV[3] the client removing it
--
-- Returns {'ok'} or {'customer_not_found'}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
ARGV[1] = iso_from_ms(clock_ms())  -- the store's now (TIME), not the caller's estimate
local cust = KEYS[1]
if redis.call('EXISTS', cust) == 0 then return {'customer_not_found'} end
local had = (redis.call('HGET', cust, 'totp') or '') ~= ''
  or (redis.call('HGET', cust, 'totp_pending') or '') ~= ''
redis.call('HDEL', cust, 'totp', 'totp_pending')
if had then
  add_event(KEYS[2], ARGV[2], ARGV[1], 'totp.removed', redis.call('HGET', cust, 'customer_id'),
            {'by', ARGV[3]})
end
return {'ok'}
