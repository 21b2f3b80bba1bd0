-- unlock: the bank's reset procedure: clear the lock, the consecutive-failure count and the
-- count of temporary locks (clear_lock in _lib.lua).
--
-- KEYS[1] customer hash   KEYS[2] events stream
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (RFC 3339)  ARGV[2] events retention (ms)   ARGV[3] client that unlocked
--
-- Returns {'ok', customer field, value, ...} or {'customer_not_found'}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
ARGV[1] = iso_from_ms(clock_ms())  -- the store's now (TIME), not the caller's estimate
local cust = KEYS[1]
if redis.call('EXISTS', cust) == 0 then return {'customer_not_found'} end
local was_locked = redis.call('HGET', cust, 'locked') == '1'
clear_lock(cust, true)
if was_locked then
  add_event(KEYS[2], ARGV[2], ARGV[1], 'customer.unlocked', redis.call('HGET', cust, 'customer_id'),
            {'by', ARGV[3]})
end
return {'ok', unpack(redis.call('HGETALL', cust))}
