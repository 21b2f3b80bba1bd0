-- Queue a failed delivery again (an operator's retry): pending, due now, with a whole new
-- round of the retry schedule; its attempts go on counting.
-- KEYS[1] webhook endpoints hash, KEYS[2] the webhook doorbell (sharded channel),
-- KEYS[3..11] the endpoint's keys (authgw.keys.EndpointKeys), KEYS[12] the webhook audit stream
-- ARGV[1] name, ARGV[2] delivery id, ARGV[3] the operator's client name, ARGV[4] the audit's
-- retention (ms)
-- Returns {'ok', record JSON}, {'webhook_not_found'}, {'delivery_not_found'} or
-- {'delivery_not_failed'}. Rings the doorbell with the name. Audits `webhook.delivery_retried`
-- (with the delivery's id, its event's id and type) under ARGV[3].
local now_ms, now_iso = clock_now()
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'webhook_not_found'} end
local k = wh_keys(3)
local raw = redis.call('HGET', k.records, ARGV[2])
if not raw then return {'delivery_not_found'} end
local rec = cjson.decode(raw)
if rec.state ~= 'failed' then return {'delivery_not_failed'} end
rec.state, rec.base, rec.open, rec.next_ms = 'pending', rec.attempts, false, wh_ms(now_ms)
redis.call('ZREM', k.failed, rec.id)
redis.call('ZREM', k.done, rec.id)
redis.call('ZADD', k.due, now_ms, rec.id)
redis.call('ZADD', k.lag, tonumber(rec.event_ms), rec.id)
redis.call('ZADD', k.pending, tonumber(rec.seq), rec.id)
wh_save(k, rec)
wh_audit(KEYS[3 + WH_KEYS_PER_ENDPOINT], ARGV[4], now_iso, ARGV[3], 'webhook.delivery_retried',
         ARGV[1], {'delivery_id', rec.id, 'event_id', rec.event_id, 'event_type', rec.type})
redis.call('SPUBLISH', KEYS[2], ARGV[1])
return {'ok', cjson.encode(rec)}
