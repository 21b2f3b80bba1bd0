-- Fan one event out: a pending delivery, due now, for each enabled endpoint whose patterns
-- match the event and that existed when it happened. Idempotent per (endpoint, event id).
-- (A test event, sent to one endpoint whatever its patterns, is webhook_test.lua's.)
-- KEYS[1] webhook endpoints hash, KEYS[2] the webhook doorbell (sharded channel), then the
-- nine keys of each candidate endpoint, in ARGV's order (authgw.keys.EndpointKeys)
-- ARGV[1] event id, ARGV[2] event type, ARGV[3] the event's time (ms), ARGV[4] the body,
-- ARGV[5] n, the number of candidates, ARGV[6..5+n] their names, ARGV[6+n..5+2n] a new
-- delivery id for each
-- Returns {'ok', created count, the names that got one, comma-separated} or {'retry'} (an
-- endpoint that should get the event is not among the candidates: the caller's list was stale).
-- Rings the doorbell with the names that got a delivery.
local now_ms = clock_ms()
local event_id, etype, event_ms, body = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local n = tonumber(ARGV[5])
local candidate = {}
for i = 1, n do candidate[ARGV[5 + i]] = i end

local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if not candidate[all[i]] and wh_wants(cjson.decode(all[i + 1]), etype, event_ms) then
    return {'retry'}
  end
end

local created = {}
for i = 1, n do
  local name = ARGV[5 + i]
  local raw = redis.call('HGET', KEYS[1], name)
  if raw and wh_wants(cjson.decode(raw), etype, event_ms) then
    local k = wh_keys(3 + (i - 1) * WH_KEYS_PER_ENDPOINT)
    local id = ARGV[5 + n + i]
    if redis.call('HSETNX', k.seen, event_id, id) == 1 then
      wh_create(k, id, event_id, etype, event_ms, body, now_ms)
      created[#created + 1] = name
    end
  end
end
if #created > 0 then
  redis.call('SPUBLISH', KEYS[2], table.concat(created, ','))
end
return {'ok', #created, table.concat(created, ',')}
