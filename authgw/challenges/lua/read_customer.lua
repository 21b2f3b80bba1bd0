-- read_customer: a customer as of now, ending first a temporary lock whose time is up
-- (lock_state in _lib.lua).
--
-- KEYS[1] customer hash   KEYS[2] events stream
-- ARGV[1] now (ms)        ARGV[2] events max length
--
-- Returns {'ok', customer field, value, ...} or {'customer_not_found'}.
local cust = KEYS[1]
if redis.call('EXISTS', cust) == 0 then return {'customer_not_found'} end
lock_state(cust, KEYS[2], ARGV[2], tonumber(ARGV[1]))
return {'ok', unpack(redis.call('HGETALL', cust))}
