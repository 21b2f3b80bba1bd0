-- Rotate an endpoint's secret: the new one signs from now on, the old one too for a while.
-- KEYS[1] webhook endpoints hash, KEYS[2] the webhook audit stream
-- ARGV[1] name, ARGV[2] the incarnation the caller sealed the new secret to, ARGV[3] the new
-- sealed secret, ARGV[4] how long the old secret keeps signing (ms), ARGV[5] the operator's
-- client name, ARGV[6] the audit's retention (ms)
-- Returns {'ok', record JSON}, {'stale'} (the endpoint was deleted and made again since the
-- caller read it: seal again) or {'webhook_not_found'}. Audits `webhook.secret_rotated` under
-- ARGV[5] (never a secret).
local now_ms, now_iso = clock_now()
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'webhook_not_found'} end
local endpoint = cjson.decode(raw)
if endpoint.incarnation ~= ARGV[2] then return {'stale'} end
endpoint.previous = endpoint.secret
endpoint.previous_until_ms = wh_ms(now_ms + tonumber(ARGV[4]))
endpoint.secret = ARGV[3]
local record = cjson.encode(endpoint)
redis.call('HSET', KEYS[1], ARGV[1], record)
wh_audit(KEYS[2], ARGV[6], now_iso, ARGV[5], 'webhook.secret_rotated', ARGV[1])
return {'ok', record}
