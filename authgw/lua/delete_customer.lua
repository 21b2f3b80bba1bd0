-- delete_customer: remove a customer: cancel their open challenges, erase their TOTP secret
-- and phones, each change named by its author. The events stream stays (for the retention):
-- it is the audit trail a fraud claim needs.
--
-- KEYS[1] customer hash   KEYS[2] open zset   KEYS[3] events stream   KEYS[4] lines hash
-- KEYS[5..] the open challenges' hashes
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)   ARGV[2] now (RFC 3339)   ARGV[3] events retention (ms)   ARGV[4] retention (ms)
-- (ARGV[1] and ARGV[2] are the caller's estimate: the script replaces both with the store's TIME, clock_now)
-- ARGV[5] the client deleting   ARGV[6..] the open challenges' ids, in KEYS order
--
-- Returns {'ok', phones JSON}, {'customer_not_found'}, or {'retry'} when the open set is not
-- what the caller read (a challenge was created meanwhile).
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
ARGV[1], ARGV[2] = clock_now()  -- the store's now (TIME), not the caller's estimate
local cust, open, events, lines = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', cust) == 0 then return {'customer_not_found'} end
if redis.call('ZCARD', open) ~= #KEYS - 4 then return {'retry'} end
local customer_id = redis.call('HGET', cust, 'customer_id')
local by = ARGV[5]
for i = 5, #KEYS do
  local id = ARGV[i + 1]
  if not redis.call('ZSCORE', open, id) then return {'retry'} end
end
for i = 5, #KEYS do
  local id = ARGV[i + 1]
  local status = settle(KEYS[i], open, events, lines, ARGV[3], tonumber(ARGV[1]), id)
  if status == 'pending' or status == 'verified' then
    end_challenge(KEYS[i], open, lines, id, 'cancelled', ARGV[2], tonumber(ARGV[4]))
    add_event(events, ARGV[3], ARGV[2], 'challenge.cancelled', customer_id,
              {'challenge_id', id, 'reason', 'customer_deleted', 'by', by})
  end
end
if (redis.call('HGET', cust, 'totp') or '') ~= '' then
  add_event(events, ARGV[3], ARGV[2], 'totp.removed', customer_id,
            {'reason', 'customer_deleted', 'by', by})
end
local removed = {}
for _, phone in ipairs(cjson.decode(redis.call('HGET', cust, 'phones') or '[]')) do
  removed[#removed + 1] = masked_number(phone)
end
if #removed > 0 then
  add_event(events, ARGV[3], ARGV[2], 'customer.phones_changed', customer_id,
            {'added', '[]', 'removed', json_array(removed), 'reason', 'customer_deleted', 'by', by})
end
local phones = redis.call('HGET', cust, 'phones') or '[]'
-- The lines stay: their bindings hold until each challenge's expires_at, and the hash expires
-- with the last of them (bind_line).
redis.call('DEL', cust, open)
redis.call('ZREM', LOCKED, customer_id)
return {'ok', phones}
