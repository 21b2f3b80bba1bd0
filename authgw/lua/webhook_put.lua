-- Create or update a webhook endpoint (PUT /v1/webhooks/{name}).
-- KEYS[1] webhook endpoints hash, KEYS[2] the webhook audit stream
-- ARGV[1] name, ARGV[2] url, ARGV[3] events (JSON array of patterns), ARGV[4] enabled '1'|'0',
-- ARGV[5] the sealed secret of a new endpoint, ARGV[6] the new endpoint's incarnation (the
-- secret is sealed to it), ARGV[7] how many endpoints there may be at most, ARGV[8] the
-- operator's client name, ARGV[9] the audit's retention (ms)
-- Returns {'created', record JSON} (the secret and incarnation used),
-- {'updated', record JSON} (url, events and enabled replaced; secret and creation kept),
-- or {'too_many_webhooks'}. Audits `webhook.created` or `webhook.updated` (with the url, the
-- patterns and enabled) under ARGV[8].
local now_ms, now_iso = clock_now()
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local events = cjson.decode(ARGV[3])
local function audit(action)
  wh_audit(KEYS[2], ARGV[9], now_iso, ARGV[8], action, ARGV[1],
           {'url', ARGV[2], 'events', ARGV[3], 'enabled', ARGV[4]})
end
if raw then
  local endpoint = cjson.decode(raw)
  endpoint.url, endpoint.events, endpoint.enabled = ARGV[2], events, ARGV[4] == '1'
  local record = cjson.encode(endpoint)
  redis.call('HSET', KEYS[1], ARGV[1], record)
  audit('webhook.updated')
  return {'updated', record}
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[7]) then return {'too_many_webhooks'} end
local record = cjson.encode({url = ARGV[2], events = events, enabled = ARGV[4] == '1',
                             created_ms = wh_ms(now_ms), created_at = now_iso,
                             incarnation = ARGV[6], secret = ARGV[5], previous = '',
                             previous_until_ms = '0'})
redis.call('HSET', KEYS[1], ARGV[1], record)
audit('webhook.created')
return {'created', record}
