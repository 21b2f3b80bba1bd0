-- expire_due: settle the given open challenges of one customer whose time is up, so that
-- their `challenge.expired` events stand in the trail before it is read.
--
-- KEYS[1] open zset   KEYS[2] events stream   KEYS[3] lines hash   KEYS[4..] challenge hashes
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)    ARGV[2] events retention (ms)   ARGV[3..] the challenges' ids, in KEYS order
--
-- Returns {'ok', number settled}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
ARGV[1] = clock_ms()  -- the store's now (TIME), not the caller's estimate
local settled = 0
for i = 4, #KEYS do
  local id = ARGV[i - 1]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if settle(KEYS[i], KEYS[1], KEYS[2], KEYS[3], ARGV[2], tonumber(ARGV[1]), id) == 'expired' then
      settled = settled + 1
    end
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', PENDING, id)
  end
end
return {'ok', settled}
