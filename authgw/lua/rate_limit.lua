-- rate_limit: one request counted in a fixed window (authgw.ratelimit).
--
-- The counter is its own key with its own hash tag, so it runs on every topology. The window
-- starts with the first count: the key expires with it.
--
-- KEYS[1] the counter (string, its own slot)
-- ARGV[1] the window (ms)
--
-- Returns {count in this window, ms until the window ends}. Never fails.
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
