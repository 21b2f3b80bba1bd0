-- read_limits: a customer's limits in effect, raises still waiting, and today's usage (a read:
-- nothing is written; a raise whose time has come reads as in effect).
--
-- KEYS[1] customer hash   KEYS[2] usage hash   KEYS[3] open zset
-- ARGV[1] now (ms)   ARGV[2] limit defaults (limit_defaults in _lib.lua)
-- ARGV[3] local days (day_of in _lib.lua)
--
-- Returns {'ok', '<kind>:<field>', value, ['raise:<kind>:<field>', '<value>|<RFC 3339>'], ...,
-- '<kind>:used_today', amount, ...}, {'customer_not_found'}, {'stale'}.
ARGV[1] = clock_ms()  -- the store's now (TIME), not the caller's estimate
local cust, now_ms, defaults = KEYS[1], tonumber(ARGV[1]), limit_defaults(ARGV[2])
local day = day_of(ARGV[3], now_ms)
if not day then return {'stale'} end
if redis.call('EXISTS', cust) == 0 then return {'customer_not_found'} end
return limits_answer(cust, KEYS[2], KEYS[3], defaults, day, now_ms)
