-- Queue a test event for one endpoint, whatever its patterns (POST /v1/webhooks/{name}/test):
-- a pending delivery, due now.
-- KEYS[1] webhook endpoints hash, KEYS[2] the webhook doorbell (sharded channel),
-- KEYS[3..11] the endpoint's keys (authgw.keys.EndpointKeys), KEYS[12] the webhook audit stream
-- ARGV[1] name, ARGV[2] event id, ARGV[3] event type, ARGV[4] the event's time (ms),
-- ARGV[5] the body, ARGV[6] a new delivery id, ARGV[7] the operator's client name,
-- ARGV[8] the audit's retention (ms)
-- Returns {'ok', the delivery's record JSON} or {'webhook_not_found'}. Rings the doorbell with
-- the name. Audits `webhook.test_sent` (with the delivery's and the event's id) under ARGV[7].
local now_ms, now_iso = clock_now()
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'webhook_not_found'} end
local k = wh_keys(3)
local record = wh_create(k, ARGV[6], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], now_ms)
redis.call('HSET', k.seen, ARGV[2], ARGV[6])
wh_audit(KEYS[3 + WH_KEYS_PER_ENDPOINT], ARGV[8], now_iso, ARGV[7], 'webhook.test_sent', ARGV[1],
         {'delivery_id', ARGV[6], 'event_id', ARGV[2]})
redis.call('SPUBLISH', KEYS[2], ARGV[1])
return {'ok', record}
