-- totp_enrol: store a new pending TOTP secret (encrypted), replacing any pending one, and
-- write `totp.enrolment_started` naming its author.
-- An active secret stays active until the new one is confirmed; failures are not reset.
--
-- KEYS[1] customer hash   KEYS[2] events stream
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] the new secret's ciphertext   ARGV[2] now (RFC 3339)   ARGV[3] events retention (ms)
-- ARGV[4] the client enrolling
--
-- Returns {'ok'} or {'customer_not_found'}.
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'customer_not_found'} end
redis.call('HSET', KEYS[1], 'totp_pending', ARGV[1])
add_event(KEYS[2], ARGV[3], ARGV[2], 'totp.enrolment_started', redis.call('HGET', KEYS[1], 'customer_id'),
          {'method', 'totp', 'by', ARGV[4]})
return {'ok'}
