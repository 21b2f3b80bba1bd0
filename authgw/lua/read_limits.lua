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
local out = {'ok'}
for _, kind in ipairs(LIMIT_KINDS) do
  for _, field in ipairs(LIMIT_FIELDS) do
    local value, raise_to, raise_at = limit_in_effect(cust, kind, field, defaults, now_ms)
    out[#out + 1] = kind .. ':' .. field
    out[#out + 1] = string.format('%d', value)
    if raise_to then
      out[#out + 1] = 'raise:' .. kind .. ':' .. field
      out[#out + 1] = string.format('%d', raise_to) .. '|' .. iso_from_ms(raise_at)
    end
  end
  out[#out + 1] = kind .. ':used_today'
  out[#out + 1] = string.format('%d', used_today(KEYS[2], KEYS[3], kind, day, now_ms, false))
end
return out
