-- verify_totp: judge a TOTP code for a challenge, counting failures and refusing replays.
--
-- KEYS[1] challenge hash   KEYS[2] customer hash   KEYS[3] open zset
-- KEYS[4] events stream    KEYS[5] lines hash
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms): the store's time the codes were computed at   ARGV[2] now (RFC 3339)
-- (ARGV[1] and ARGV[2] are the caller's estimate: the script replaces both with the store's TIME, clock_now)
-- ARGV[3] events retention (ms)   ARGV[4] retention (ms)
-- ARGV[5] client     ARGV[6] lockout policy (lockout_policy in _lib.lua)
-- ARGV[7] the TOTP ciphertext the caller computed codes with ('' if it found none)
-- ARGV[8] comma-separated time steps whose code matched ('' for none)
-- ARGV[9] challenge id
--
-- Returns {'ok', challenge field, value, ...}, {'invalid_code', attempts left, locked 0|1, failures before lock}, {'stale'} (the secret changed
-- since the caller read it, or the codes were computed at another time: read again), {'challenge_not_found'}, {'challenge_expired'},
-- {'challenge_not_pending'}, {'customer_locked'}, {'method_unavailable'}.
-- The codes were computed at ARGV[1], the store's time as the secret was read (totp_secret):
-- they are judged only if that is this script's now too, give or take a round trip.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
if math.abs(clock_ms() - tonumber(ARGV[1])) > 2000 then return {'stale'} end
ARGV[1], ARGV[2] = clock_now()  -- the store's now (TIME), not the caller's estimate
local ch, cust, open, events, lines = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now_ms, now_iso, maxlen, keep_ms = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local id = ARGV[9]

if redis.call('HGET', ch, 'client') ~= ARGV[5] then return {'challenge_not_found'} end
local customer_id = redis.call('HGET', ch, 'customer_id')
local status = settle(ch, open, events, lines, maxlen, now_ms, id)
if not has_method(ch, 'totp') then return {'method_unavailable'} end
if status == 'expired' then return {'challenge_expired'} end
if status ~= 'pending' then return {'challenge_not_pending'} end
if factor_done(ch, 'totp') then return {'challenge_not_pending'} end
if redis.call('EXISTS', cust) == 0 then return {'challenge_not_pending'} end
if lock_state(cust, events, maxlen, now_ms) then return {'customer_locked'} end
local secret = redis.call('HGET', cust, 'totp') or ''
if secret == '' then return {'method_unavailable'} end
if secret ~= ARGV[7] then return {'stale'} end

local step = fresh_step(cust, ARGV[8])
if step then
  redis.call('HSET', cust, 'last_step', step)
  mark_verified(ch, cust, events, maxlen, now_iso, customer_id, id, 'totp')
  return {'ok', unpack(redis.call('HGETALL', ch))}
end
local attempts, locked, before_lock = count_failure(ch, cust, open, events, lines, maxlen, now_ms,
                                                    now_iso, keep_ms, ARGV[6], id, customer_id, 'totp')
return {'invalid_code', attempts, locked, before_lock}
