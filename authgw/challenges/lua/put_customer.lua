-- put_customer: register a customer or replace their phones.
--
-- KEYS[1] customer hash
-- ARGV[1] customer id   ARGV[2] phones (JSON array of E.164)   ARGV[3] region   ARGV[4] now
--
-- Returns {'ok', created 0|1, the previous phones (JSON array), customer field, value, ...}.
ARGV[4] = iso_from_ms(clock_ms())  -- the store's now (TIME), not the caller's estimate
local cust = KEYS[1]
local previous = redis.call('HGET', cust, 'phones') or '[]'
local created = redis.call('EXISTS', cust) == 0 and 1 or 0
if created == 1 then
  redis.call('HSET', cust, 'customer_id', ARGV[1], 'failed', 0, 'locked', 0,
             'last_step', -1, 'created_at', ARGV[4])
end
redis.call('HSET', cust, 'phones', ARGV[2], 'region', ARGV[3], 'updated_at', ARGV[4])
return {'ok', created, previous, unpack(redis.call('HGETALL', cust))}
