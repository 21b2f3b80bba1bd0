-- List an endpoint's deliveries, newest first (a read).
-- KEYS[1] webhook endpoints hash, KEYS[2] the endpoint's records hash, KEYS[3] its pending,
-- KEYS[4] delivered and KEYS[5] failed zsets (by creation order)
-- ARGV[1] name, ARGV[2] state (pending | delivered | failed, '' for every state), ARGV[3] limit
-- Returns {'ok', record JSON...} or {'webhook_not_found'}.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'webhook_not_found'} end
local limit = tonumber(ARGV[3])
local by_state = {pending = KEYS[3], delivered = KEYS[4], failed = KEYS[5]}
local states = {'pending', 'delivered', 'failed'}
if ARGV[2] ~= '' then states = {ARGV[2]} end
local found = {}
for _, state in ipairs(states) do
  local page = redis.call('ZREVRANGE', by_state[state], 0, limit - 1, 'WITHSCORES')
  for i = 1, #page, 2 do found[#found + 1] = {page[i], tonumber(page[i + 1])} end
end
table.sort(found, function(a, b) return a[2] > b[2] end)
local out = {'ok'}
for i = 1, math.min(limit, #found) do
  local raw = redis.call('HGET', KEYS[2], found[i][1])
  if raw then out[#out + 1] = raw end
end
return out
