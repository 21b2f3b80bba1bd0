-- read_challenge: a challenge as of now, turning it `expired` first if its time is up.
--
-- KEYS[1] challenge hash   KEYS[2] open zset   KEYS[3] events stream   KEYS[4] lines hash
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)         ARGV[2] events retention (ms)   ARGV[3] client   ARGV[4] challenge id
-- ARGV[5] '1': the client reads every client's challenges (an operator, roles on)
--
-- Returns {'ok', field, value, ...} or {'challenge_not_found'}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
ARGV[1] = clock_ms()  -- the store's now (TIME), not the caller's estimate
local ch = KEYS[1]
local owner = redis.call('HGET', ch, 'client')
if not owner or (owner ~= ARGV[3] and ARGV[5] ~= '1') then return {'challenge_not_found'} end
local id = ARGV[4]
settle(ch, KEYS[2], KEYS[3], KEYS[4], ARGV[2], tonumber(ARGV[1]), id)
local result = redis.call('HGETALL', ch)
table.insert(result, 1, 'ok')
return result
