-- phones_viewed: record that an operator was shown a customer's phone numbers in full (the
-- console masks them but for the last four digits until asked).
--
-- KEYS[1] customer hash   KEYS[2] events stream
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] events retention (ms)   ARGV[2] the operator's client name
--
-- Returns {'ok'} or {'customer_not_found'}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
local cust = KEYS[1]
if redis.call('EXISTS', cust) == 0 then return {'customer_not_found'} end
add_event(KEYS[2], ARGV[1], iso_from_ms(clock_ms()), 'customer.phones_viewed',
          redis.call('HGET', cust, 'customer_id'), {'by', ARGV[2]})
return {'ok'}
