-- Delete a webhook endpoint and every delivery of it, in one step: nothing more is claimed
-- for it, and a deliverer's late record of an old delivery finds nothing to change.
-- KEYS[1] webhook endpoints hash, KEYS[2..10] the endpoint's keys (authgw.keys.EndpointKeys),
-- KEYS[11] the webhook audit stream
-- ARGV[1] name, ARGV[2] the operator's client name, ARGV[3] the audit's retention (ms)
-- Returns {'ok'} or {'webhook_not_found'}. Audits `webhook.deleted` (with the url) under ARGV[2].
local _, now_iso = clock_now()
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'webhook_not_found'} end
redis.call('HDEL', KEYS[1], ARGV[1])
for i = 2, 1 + WH_KEYS_PER_ENDPOINT do
  redis.call('UNLINK', KEYS[i])
end
wh_audit(KEYS[2 + WH_KEYS_PER_ENDPOINT], ARGV[3], now_iso, ARGV[2], 'webhook.deleted', ARGV[1],
         {'url', cjson.decode(raw).url})
return {'ok'}
