-- idempotency_claim: claim an Idempotency-Key for one request body, client-wide.
--
-- KEYS[1] the claim
-- ARGV[1] request hash   ARGV[2] TTL (ms)
--
-- Returns {'ok'} when the key is new or was claimed with the same body,
-- {'idempotency_conflict'} when it was claimed with another.
local previous = redis.call('GET', KEYS[1])
if previous and previous ~= ARGV[1] then return {'idempotency_conflict'} end
if not previous then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return {'ok'}
