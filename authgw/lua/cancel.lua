-- cancel: end a pending challenge at the client's request.
--
-- KEYS[1] challenge hash   KEYS[2] open zset   KEYS[3] events stream   KEYS[4] lines hash
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)   ARGV[2] now (RFC 3339)   ARGV[3] events retention (ms)   ARGV[4] retention (ms)
-- (ARGV[1] and ARGV[2] are the caller's estimate: the script replaces both with the store's TIME, clock_now)
-- ARGV[5] client     ARGV[6] challenge id
--
-- Returns {'ok', challenge field, value, ...}, {'challenge_not_found'}, {'challenge_not_pending'}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
ARGV[1], ARGV[2] = clock_now()  -- the store's now (TIME), not the caller's estimate
local ch, open, events, lines = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[6]
if redis.call('HGET', ch, 'client') ~= ARGV[5] then return {'challenge_not_found'} end
local status = settle(ch, open, events, lines, ARGV[3], tonumber(ARGV[1]), id)
if status ~= 'pending' then return {'challenge_not_pending'} end
end_challenge(ch, open, lines, id, 'cancelled', ARGV[2], tonumber(ARGV[4]))
add_event(events, ARGV[3], ARGV[2], 'challenge.cancelled', redis.call('HGET', ch, 'customer_id'),
          {'challenge_id', id, 'reason', 'client', 'by', ARGV[5]})
return {'ok', unpack(redis.call('HGETALL', ch))}
