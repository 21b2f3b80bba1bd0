-- consume: use a verified challenge for the transaction it was made for, exactly once.
--
-- KEYS[1] challenge hash   KEYS[2] open zset   KEYS[3] events stream   KEYS[4] lines hash
-- KEYS[5] customer hash (a locked customer's challenge is not consumed: it stays verified)
-- KEYS[6] usage hash (its amount moves into the day's consumed total: count_consumed)
-- KEYS[7] payees zset (its payee is no longer new: remember_payee)
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)   ARGV[2] now (RFC 3339)   ARGV[3] events retention (ms)   ARGV[4] retention (ms)
-- (ARGV[1] and ARGV[2] are the caller's estimate: the script replaces both with the store's TIME, clock_now)
-- ARGV[5] client     ARGV[6] transaction digest presented   ARGV[7] challenge id
--
-- Returns {'ok', challenge field, value, ...}, {'challenge_not_found'}, {'already_consumed'}, {'challenge_expired'},
-- {'challenge_not_verified'}, {'digest_mismatch'}, {'customer_locked'}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
ARGV[1], ARGV[2] = clock_now()  -- the store's now (TIME), not the caller's estimate
local ch, open, events, lines = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[7]
if redis.call('HGET', ch, 'client') ~= ARGV[5] then return {'challenge_not_found'} end
local status = settle(ch, open, events, lines, ARGV[3], tonumber(ARGV[1]), id)
if status == 'consumed' then return {'already_consumed'} end
if status == 'expired' then return {'challenge_expired'} end
if status ~= 'verified' then return {'challenge_not_verified'} end
if lock_state(KEYS[5], events, ARGV[3], tonumber(ARGV[1])) then return {'customer_locked'} end
local doc = cjson.decode(redis.call('HGET', ch, 'doc'))
if doc['transaction_digest'] ~= ARGV[6] then return {'digest_mismatch'} end
end_challenge(ch, open, lines, id, 'consumed', ARGV[2], tonumber(ARGV[4]))
redis.call('HSET', ch, 'consumed_at', ARGV[2])
count_consumed(KEYS[6], id)
remember_payee(KEYS[7], doc['payee_digest'], tonumber(ARGV[1]), tonumber(ARGV[3]))
add_event(events, ARGV[3], ARGV[2], 'challenge.consumed', redis.call('HGET', ch, 'customer_id'),
          {'challenge_id', id})
return {'ok', unpack(redis.call('HGETALL', ch))}
