-- Record how one claimed try went. Ignored unless the delivery is pending, its claim is
-- still out and its attempt is this one (another deliverer re-claimed it: its record counts).
-- KEYS[1] webhook endpoints hash, KEYS[2..10] the endpoint's keys (authgw.keys.EndpointKeys)
-- ARGV[1] name, ARGV[2] delivery id, ARGV[3] attempt, ARGV[4] ok '1'|'0', ARGV[5] the
-- endpoint's HTTP status ('' none), ARGV[6] error ('' none), ARGV[7] the endpoint's
-- Retry-After (ms, 0 none), ARGV[8] the retry schedule (waits in s, comma-separated),
-- ARGV[9] how long finished deliveries are kept (ms)
-- Returns {'delivered'}, {'retry', next attempt ms}, {'failed'} (no try left) or {'ignored'}.
local now_ms = clock_ms()
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'ignored'} end
local k = wh_keys(2)
local raw = redis.call('HGET', k.records, ARGV[2])
if not raw then return {'ignored'} end
local rec = cjson.decode(raw)
if rec.state ~= 'pending' or not rec.open or rec.attempts ~= tonumber(ARGV[3]) then
  return {'ignored'}
end
rec.last_status, rec.last_error, rec.open = ARGV[5], ARGV[6], false
wh_prune(k, now_ms, tonumber(ARGV[9]), 100)
if ARGV[4] == '1' then
  wh_finish(k, rec, 'delivered', now_ms)
  return {'delivered'}
end
local waits = {}
for wait in string.gmatch(ARGV[8], '%d+') do waits[#waits + 1] = tonumber(wait) end
local tries = rec.attempts - rec.base
if tries > #waits then
  wh_finish(k, rec, 'failed', now_ms)
  return {'failed'}
end
local next_ms = now_ms + math.max(waits[tries] * 1000, tonumber(ARGV[7]))
rec.next_ms = wh_ms(next_ms)
redis.call('ZADD', k.due, next_ms, rec.id)
wh_save(k, rec)
return {'retry', wh_ms(next_ms)}
