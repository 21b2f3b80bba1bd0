-- put_customer: register a customer or replace their phones.
-- A change of the set of phones (the first registration too) writes
-- `customer.phones_changed` naming its author, with the numbers added and removed (masked).
--
-- KEYS[1] customer hash   KEYS[2] events stream
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] customer id   ARGV[2] phones (JSON array of E.164)   ARGV[3] region   ARGV[4] now
-- ARGV[5] events retention (ms)   ARGV[6] the client making the change
--
-- Returns {'ok', created 0|1, the previous phones (JSON array), customer field, value, ...}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
local now_ms = clock_ms()
ARGV[4] = iso_from_ms(now_ms)  -- the store's now (TIME), not the caller's estimate
local cust = KEYS[1]
local previous = redis.call('HGET', cust, 'phones') or '[]'
-- When each phone was added (phones_added in _lib.lua): kept for a phone registered before.
local added_at = phones_added(cust, cjson.decode(ARGV[2]), now_ms)
local created = redis.call('EXISTS', cust) == 0 and 1 or 0
if created == 1 then
  redis.call('HSET', cust, 'customer_id', ARGV[1], 'failed', 0, 'locked', 0,
             'last_step', -1, 'created_at', ARGV[4])
end
redis.call('HSET', cust, 'phones', ARGV[2], 'region', ARGV[3], 'updated_at', ARGV[4],
           'phones_added', added_at)

local function missing_from(list, other)
  local present, out = {}, {}
  for _, phone in ipairs(other) do present[phone] = true end
  for _, phone in ipairs(list) do
    if not present[phone] then out[#out + 1] = masked_number(phone) end
  end
  return out
end
local old_phones, new_phones = cjson.decode(previous), cjson.decode(ARGV[2])
local added, removed = missing_from(new_phones, old_phones), missing_from(old_phones, new_phones)
if #added > 0 or #removed > 0 then
  add_event(KEYS[2], ARGV[5], ARGV[4], 'customer.phones_changed', ARGV[1],
            {'added', json_array(added), 'removed', json_array(removed), 'by', ARGV[6]})
end
return {'ok', created, previous, unpack(redis.call('HGETALL', cust))}
