-- idempotency_settle: a challenge was created (or replayed) under an Idempotency-Key.
--
-- The claim becomes done: it keeps the key for this body for the claim's full TTL, whoever
-- else held it. This request's hold ends.
--
-- KEYS[1] the claim
-- ARGV[1] request hash   ARGV[2] this request's token   ARGV[3] TTL of the claim (ms)
--
-- Returns {'ok'}, or {'idempotency_conflict'} when another body holds the key now (this
-- request's lease ended before it settled; the claim is left to that body).
local claim, request_hash, token = KEYS[1], ARGV[1], 't:' .. ARGV[2]
local kind = redis.call('TYPE', claim)['ok']
if kind == 'string' then
  if redis.call('GET', claim) == request_hash then return {'ok'} end
  return {'idempotency_conflict'}
end
local previous = redis.call('HGET', claim, 'h')
if previous and previous ~= request_hash then return {'idempotency_conflict'} end
redis.call('HDEL', claim, token)
redis.call('HSET', claim, 'h', request_hash, 'done', '1')
redis.call('PEXPIRE', claim, ARGV[3])
return {'ok'}
