-- totp_enrol: store a new pending TOTP secret (encrypted), replacing any pending one.
-- An active secret stays active until the new one is confirmed; failures are not reset.
--
-- KEYS[1] customer hash
-- ARGV[1] the new secret's ciphertext
--
-- Returns {'ok'} or {'customer_not_found'}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'customer_not_found'} end
redis.call('HSET', KEYS[1], 'totp_pending', ARGV[1])
return {'ok'}
