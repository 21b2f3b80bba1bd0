-- totp_secret: a customer's TOTP ciphertext, with the store's now (TIME) to compute its codes
-- at, so that the steps a code is judged against are the store's, not the host's.
--
-- KEYS[1] customer hash
-- ARGV[1] which secret: 'totp' (the active one) or 'totp_pending'
--
-- Returns {'ok', customer id or '', ciphertext or '', now (ms, the store's clock)}.
local v = redis.call('HMGET', KEYS[1], 'customer_id', ARGV[1])
return {'ok', v[1] or '', v[2] or '', clock_ms()}
