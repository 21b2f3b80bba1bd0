-- Claim an endpoint's due deliveries: up to `limit` pending ones due now, each pushed to
-- now + lease (a claim never recorded comes back by itself) with its attempt counted. A
-- delivery whose last try was claimed and never recorded, with no try left, fails here.
-- Nothing is claimed for a disabled endpoint (its deliveries wait) or a missing one.
-- KEYS[1] webhook endpoints hash, KEYS[2..10] the endpoint's keys (authgw.keys.EndpointKeys)
-- ARGV[1] name, ARGV[2] limit, ARGV[3] lease (ms), ARGV[4] tries a round of the schedule
-- has (waits + 1), ARGV[5] how long finished deliveries are kept (ms)
-- Returns {'ok', endpoint record JSON, then id, event id, body, attempt of each claim} or
-- {'webhook_not_found'}.
local now_ms = clock_ms()
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'webhook_not_found'} end
local k = wh_keys(2)
local out = {'ok', raw}
wh_prune(k, now_ms, tonumber(ARGV[5]), 100)
if not cjson.decode(raw).enabled then return out end
local lease, tries = tonumber(ARGV[3]), tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', k.due, '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local record = redis.call('HGET', k.records, id)
  if not record then
    redis.call('ZREM', k.due, id)
  else
    local rec = cjson.decode(record)
    if rec.open then
      rec.last_status, rec.last_error = '', 'lease_expired'
    end
    if rec.attempts - rec.base >= tries then
      wh_finish(k, rec, 'failed', now_ms)
    else
      rec.attempts, rec.open = rec.attempts + 1, true
      rec.next_ms = wh_ms(now_ms + lease)
      redis.call('ZADD', k.due, now_ms + lease, id)
      wh_save(k, rec)
      out[#out + 1] = id
      out[#out + 1] = rec.event_id
      out[#out + 1] = redis.call('HGET', k.bodies, id)
      out[#out + 1] = rec.attempts
    end
  end
end
return out
