-- idempotency_claim: claim an Idempotency-Key for one request body, client-wide.
--
-- The claim is a hash: 'h' the request hash, 'done' '1' once a challenge was created under
-- it, and one field 't:<token>' per request still in flight, holding the end of its lease
-- (ms). A key is held by a request that created a challenge (done) or by one whose lease
-- runs; a claim of another body with neither is taken over: its holders were refused
-- (and released it) or died before creating anything.
--
-- KEYS[1] the claim
-- ARGV[1] request hash   ARGV[2] this request's token   ARGV[3] now (ms)
-- ARGV[4] lease (ms)     ARGV[5] TTL of the claim (ms)
--
-- Returns {'ok', 'held'} when this request now holds the key (it must settle or release it),
-- {'ok', 'done'} when a challenge was already created under it with the same body (nothing
-- to settle or release), {'idempotency_conflict'} when another body holds it.
local claim, request_hash, token = KEYS[1], ARGV[1], 't:' .. ARGV[2]
local now_ms = tonumber(ARGV[3])
local lease_end = now_ms + tonumber(ARGV[4])

local kind = redis.call('TYPE', claim)['ok']
if kind == 'string' then
  -- A claim written before claims were hashes: the request hash alone, taken as done.
  if redis.call('GET', claim) == request_hash then return {'ok', 'done'} end
  return {'idempotency_conflict'}
end

local previous = redis.call('HGET', claim, 'h')
if previous then
  local done = redis.call('HGET', claim, 'done') == '1'
  if previous == request_hash then
    if done then return {'ok', 'done'} end
    redis.call('HSET', claim, token, lease_end)
    return {'ok', 'held'}
  end
  if done then return {'idempotency_conflict'} end
  local fields = redis.call('HGETALL', claim)
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == 't:' and tonumber(fields[i + 1]) > now_ms then
      return {'idempotency_conflict'}
    end
  end
  redis.call('DEL', claim)
end
redis.call('HSET', claim, 'h', request_hash, token, lease_end)
redis.call('PEXPIRE', claim, ARGV[5])
return {'ok', 'held'}
