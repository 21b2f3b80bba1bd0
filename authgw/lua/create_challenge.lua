-- create_challenge: create a pending challenge for a customer, idempotently.
--
-- KEYS[1] customer hash      KEYS[2] open zset      KEYS[3] events stream
-- KEYS[4] lines hash         KEYS[5] the new challenge's hash
-- KEYS[6] usage hash (the day's usage book, used_today in _lib.lua)
-- KEYS[7] payees zset (the payee digests of consumed challenges, by when)
-- KEYS[8] idempotency record (only when ARGV[13] ~= '')
-- last 3 KEYS: the bucket's pending and locked indexes, then its outbox (take_bucket in _lib.lua)
-- ARGV[1] now (ms)           ARGV[2] now (RFC 3339)      ARGV[3] events retention (ms)
-- ARGV[4] record TTL (ms: time to expiry + retention)
-- ARGV[5] challenge id       ARGV[6] client              ARGV[7] customer id
-- ARGV[8] immutable document (JSON, without created_at and expires_at: the script adds them)
-- ARGV[9] requested methods (JSON array, '' for every usable one)
-- ARGV[10] attempts          ARGV[11] expires (ms)       ARGV[12] expires (RFC 3339)
--   (ARGV[1], ARGV[2], ARGV[11] and ARGV[12] are the caller's estimates: the script puts the
--   store's now in their place, and the expiry as far from it as ARGV[11] was from ARGV[1])
-- ARGV[13] request hash for the idempotency record, '' without one
-- ARGV[14] designated numbers of the pool (JSON array)
-- ARGV[15] code for code mode ('' otherwise)
-- ARGV[16] limit defaults (limit_defaults in _lib.lua)
-- ARGV[17] local days around now (day_of in _lib.lua)
-- ARGV[18] step-up policy (step_up in _lib.lua)
--
-- Returns {'ok', methods JSON, line, document JSON as stored, new payee 0|1, required JSON or ''}, {'replay', id},
-- {'idempotency_conflict'}, {'customer_not_found'}, {'customer_locked'}, {'method_unavailable'},
-- {'method_unavailable', 'no_free_number', when the first number is free again (RFC 3339)},
-- {'method_unavailable', 'policy', the step-up rule the customer cannot meet},
-- {'limit_exceeded', limit kind, limit, used, remaining}, {'stale'} (the store's clock lies
-- outside the days the caller sent: the host's clock is far off).

-- The store's now (TIME), not the caller's estimate; expiry the same distance from it; both
-- written into the document (the caller's leaves them out).
take_bucket(KEYS)  -- the last 3 KEYS: the bucket's indexes and outbox (_lib.lua)
local ttl_ms = tonumber(ARGV[11]) - tonumber(ARGV[1])
ARGV[1], ARGV[2] = clock_now()
ARGV[11], ARGV[12] = ARGV[1] + ttl_ms, iso_from_ms(ARGV[1] + ttl_ms)
ARGV[8] = string.sub(ARGV[8], 1, -2) .. ',"created_at":"' .. ARGV[2] .. '","expires_at":"'
  .. ARGV[12] .. '"}'
local cust, open, events, lines, ch = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now_ms = tonumber(ARGV[1])
local now_iso, maxlen, record_ttl = ARGV[2], ARGV[3], ARGV[4]
local id, client, customer_id = ARGV[5], ARGV[6], ARGV[7]
local request_hash = ARGV[13]
local idem = nil
if request_hash ~= '' then idem = KEYS[8] end

if idem then
  local previous = redis.call('GET', idem)
  if previous then
    local hash, previous_id = string.match(previous, '^([^|]*)|(.*)$')
    if hash ~= request_hash then return {'idempotency_conflict'} end
    return {'replay', previous_id}
  end
end

if redis.call('EXISTS', cust) == 0 then return {'customer_not_found'} end
if lock_state(cust, events, maxlen, now_ms) then return {'customer_locked'} end

-- Limits (judge_limits in _lib.lua): judged and booked in this one step, so no two racing
-- creations can together pass a limit.
local doc = cjson.decode(ARGV[8])
local day, day_end = day_of(ARGV[17], now_ms)
if not day then return {'stale'} end
local refused = judge_limits(cust, KEYS[6], open, doc['kind'], doc['amount'],
                             limit_defaults(ARGV[16]), day, now_ms)
if refused then return refused end

local pool = cjson.decode(ARGV[14])
local usable = {}
local phones = cjson.decode(redis.call('HGET', cust, 'phones') or '[]')
usable['callback'] = #phones > 0 and #pool > 0
usable['totp'] = (redis.call('HGET', cust, 'totp') or '') ~= ''

local requested
if ARGV[9] == '' then requested = {'callback', 'totp'} else requested = cjson.decode(ARGV[9]) end
local methods = {}
local wants_callback = false
for _, m in ipairs(requested) do
  if usable[m] then
    methods[#methods + 1] = m
    if m == 'callback' then wants_callback = true end
  end
end
if #methods == 0 then return {'method_unavailable'} end

-- Step-up (step_up in _lib.lua): a new payee or a large amount narrows the methods; from the
-- dual-factor amount both must verify.
local new_payee = not redis.call('ZSCORE', KEYS[7], doc['payee_digest'])
local required
methods, required = step_up(ARGV[18], methods, doc['amount'], new_payee)
if not methods then return {'method_unavailable', 'policy', required} end
wants_callback = false
for _, m in ipairs(methods) do
  if m == 'callback' then wants_callback = true end
end

-- A designated number not bound to any other challenge of this customer (free_line in
-- _lib.lua: the number-pool rule). None left: the challenge goes without callback when the
-- methods allow another, and is refused when callback was all they left.
local line = ''
if wants_callback then
  local number, next_free = free_line(lines, pool, now_ms)
  if number then
    line = number
  else
    local others = {}
    for _, m in ipairs(methods) do
      if m ~= 'callback' then others[#others + 1] = m end
    end
    if #others == 0 or required then
      return {'method_unavailable', 'no_free_number', iso_from_ms(next_free)}
    end
    methods = others
  end
end

redis.call('HSET', ch,
  'customer_id', customer_id, 'client', client, 'doc', ARGV[8],
  'methods', cjson.encode(methods), 'status', 'pending', 'attempts', ARGV[10],
  'exp', ARGV[11], 'exp_at', ARGV[12], 'created_ms', ARGV[1], 'new_payee', new_payee and 1 or 0)
if required then redis.call('HSET', ch, 'required', cjson.encode(required)) end
if line ~= '' then
  redis.call('HSET', ch, 'line', line)
  bind_line(lines, line, id, ARGV[11], now_ms)
  if ARGV[15] ~= '' then redis.call('HSET', ch, 'code', ARGV[15]) end
end
redis.call('PEXPIRE', ch, record_ttl)
redis.call('ZADD', open, ARGV[11], id)
redis.call('ZREMRANGEBYSCORE', PENDING, '-inf', '(' .. now_ms)  -- the bucket's expired ones
redis.call('ZADD', PENDING, ARGV[11], id)
if idem then redis.call('SET', idem, request_hash .. '|' .. id, 'PX', record_ttl) end
count_usage(KEYS[6], id, doc['kind'], day, doc['amount'], day_end, now_ms)
add_event(events, maxlen, now_iso, 'challenge.created', customer_id,
          {'challenge_id', id, 'kind', doc['kind'], 'amount', doc['amount'],
           'methods', table.concat(methods, ',')})
return {'ok', cjson.encode(methods), line, ARGV[8], new_payee and 1 or 0,
        required and cjson.encode(required) or ''}
