-- put_limits: change a customer's limits (API.md "Limits and step-up"). A raise (a limit that
-- lets more through, to 0 = no limit too) waits ARGV[6] ms; a lowering applies at once and
-- drops any raise of that limit still waiting. Each change writes `customer.limits_changed`.
--
-- KEYS[1] customer hash   KEYS[2] events stream   KEYS[3] usage hash   KEYS[4] open zset
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)   ARGV[2] events retention (ms)   ARGV[3] the client making the change
-- ARGV[4] limit defaults (limit_defaults in _lib.lua)   ARGV[5] local days (day_of in _lib.lua)
-- ARGV[6] raise delay (ms)
-- ARGV[7] how many changes follow   ARGV[8..] the changes, three items each: kind, field,
-- value (digits, or 'null': the default)
--
-- Returns {'ok', limits as read_limits returns them}, {'customer_not_found'}, {'stale'}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
ARGV[1] = clock_ms()  -- the store's now (TIME), not the caller's estimate
local cust, events = KEYS[1], KEYS[2]
local now_ms, maxlen, client = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local defaults, delay = limit_defaults(ARGV[4]), tonumber(ARGV[6])
local day = day_of(ARGV[5], now_ms)
if not day then return {'stale'} end
if redis.call('EXISTS', cust) == 0 then return {'customer_not_found'} end
local customer_id = redis.call('HGET', cust, 'customer_id')
local now_iso = iso_from_ms(now_ms)
fold_raises(cust, defaults, now_ms)

for i = 8, 7 + 3 * tonumber(ARGV[7]) - 1, 3 do
  local kind, field, to = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local own_field, raise_field = 'limit:' .. kind .. ':' .. field, 'raise:' .. kind .. ':' .. field
  local current, waiting = limit_in_effect(cust, kind, field, defaults, now_ms)
  local value = defaults[kind][field]
  if to ~= 'null' then value = tonumber(to) end
  local effective_ms = now_ms
  if looser(value, current) and delay > 0 then
    effective_ms = now_ms + delay
    redis.call('HSET', cust, raise_field, to .. '|' .. effective_ms)
  else
    if to == 'null' then redis.call('HDEL', cust, own_field) else redis.call('HSET', cust, own_field, to) end
    redis.call('HDEL', cust, raise_field)
  end
  if value ~= current or waiting ~= nil then
    add_event(events, maxlen, now_iso, 'customer.limits_changed', customer_id,
              {'kind', kind, 'field', field, 'previous', string.format('%d', current),
               'value', string.format('%d', value), 'effective_at', iso_from_ms(effective_ms),
               'by', client})
  end
end

return limits_answer(cust, KEYS[3], KEYS[4], defaults, day, now_ms)
