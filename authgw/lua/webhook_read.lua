-- Read one webhook endpoint (a read): its record, its oldest pending event and its next due time.
-- KEYS[1] webhook endpoints hash, KEYS[2] the endpoint's lag zset, KEYS[3] its due zset
-- ARGV[1] name
-- Returns {'ok', record JSON, oldest pending event's time (ms, '' none), the earliest due
-- time (ms, '' none), the store's now (ms)} or {'webhook_not_found'}.
local now_ms = clock_ms()
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'webhook_not_found'} end
local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local due = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {'ok', raw, oldest[2] or '', due[2] or '', wh_ms(now_ms)}
