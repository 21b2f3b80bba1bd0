-- Shared prelude, placed in front of every script by authgw.store.load_scripts.
-- Helpers only: no key names are built here; every key arrives in KEYS.

-- Append one event to a customer's stream. `extra` is a flat list of name, value pairs;
-- empty values are left out.
local function add_event(events_key, maxlen, at, etype, customer_id, extra)
  local fields = {'at', at, 'type', etype, 'customer_id', customer_id}
  if extra then
    for i = 1, #extra, 2 do
      local value = extra[i + 1]
      if value ~= nil and value ~= false and value ~= '' then
        fields[#fields + 1] = extra[i]
        fields[#fields + 1] = tostring(value)
      end
    end
  end
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', unpack(fields))
end

-- A lines entry is '<created ms>|<challenge id>'; returns both (0, nil for none).
local function line_holder(value)
  if not value then return 0, nil end
  local created, id = string.match(value, '^(%d+)|(.*)$')
  return tonumber(created), id
end

-- Free a challenge's designated number once it is no longer pending.
local function release_line(ch_key, lines_key, id)
  local line = redis.call('HGET', ch_key, 'line')
  if line then
    local _, holder = line_holder(redis.call('HGET', lines_key, line))
    if holder == id then redis.call('HDEL', lines_key, line) end
  end
end

-- End an open challenge: set its final status, take it off the open set and its line,
-- and keep the record for `keep_ms` from now.
local function end_challenge(ch_key, open_key, lines_key, id, status, ended_at, keep_ms)
  redis.call('HSET', ch_key, 'status', status, 'ended_at', ended_at)
  redis.call('ZREM', open_key, id)
  release_line(ch_key, lines_key, id)
  redis.call('PEXPIRE', ch_key, keep_ms)
end

-- RFC 3339 UTC with milliseconds for a UNIX time in ms (days to civil date: H. Hinnant).
local function iso_from_ms(ms)
  local seconds = math.floor(ms / 1000)
  local days = math.floor(seconds / 86400)
  local rest = seconds - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', year, month, day,
                       math.floor(rest / 3600), math.floor(rest % 3600 / 60), rest % 60, ms % 1000)
end

-- The store's clock in ms: TIME, read inside the script that judges, so that no host's clock
-- decides an expiry, a TOTP step, a window or a date. A script takes its now from here on
-- its first line, overwriting the estimate its caller passed (`ARGV[1], ARGV[2] = clock_now()`).
-- (Tests that move time by hand stand their clock in for TIME: authgw.store.load_scripts.)
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Now on the store's clock: ms, and RFC 3339.
local function clock_now()
  local ms = clock_ms()
  return ms, iso_from_ms(ms)
end

-- The challenge's status as of now_ms. A pending or verified challenge whose time is up
-- becomes `expired` here, once. Its event is dated when it is recorded, like every other, so
-- the trail stays in order; `expires_at` in the event says when the time ran out. The
-- record's TTL, set at creation, already keeps it readable for the retention period.
local function settle(ch_key, open_key, events_key, lines_key, maxlen, now_ms, id)
  local status = redis.call('HGET', ch_key, 'status')
  if (status == 'pending' or status == 'verified')
      and now_ms >= tonumber(redis.call('HGET', ch_key, 'exp')) then
    local exp_at = redis.call('HGET', ch_key, 'exp_at')
    redis.call('HSET', ch_key, 'status', 'expired', 'ended_at', exp_at)
    redis.call('ZREM', open_key, id)
    release_line(ch_key, lines_key, id)
    add_event(events_key, maxlen, iso_from_ms(now_ms), 'challenge.expired',
              redis.call('HGET', ch_key, 'customer_id'), {'challenge_id', id, 'expires_at', exp_at})
    return 'expired'
  end
  return status
end

-- Count one wrong code: against the challenge's attempts and the customer's consecutive
-- failures, locking the customer at the threshold and failing the challenge when its
-- attempts are used up. Returns attempts left and whether the customer is now locked.
local function count_failure(ch_key, cust_key, open_key, events_key, lines_key, maxlen,
                             now_iso, keep_ms, threshold, id, customer_id, method)
  local attempts = redis.call('HINCRBY', ch_key, 'attempts', -1)
  local failed = redis.call('HINCRBY', cust_key, 'failed', 1)
  add_event(events_key, maxlen, now_iso, 'challenge.failed_attempt', customer_id,
            {'challenge_id', id, 'method', method})
  local locked = 0
  if failed >= threshold and redis.call('HGET', cust_key, 'locked') ~= '1' then
    redis.call('HSET', cust_key, 'locked', '1', 'locked_at', now_iso)
    add_event(events_key, maxlen, now_iso, 'customer.locked', customer_id, {'challenge_id', id})
    locked = 1
  elseif redis.call('HGET', cust_key, 'locked') == '1' then
    locked = 1
  end
  if attempts <= 0 then
    end_challenge(ch_key, open_key, lines_key, id, 'failed', now_iso, keep_ms)
    add_event(events_key, maxlen, now_iso, 'challenge.failed', customer_id,
              {'challenge_id', id, 'method', method})
  end
  return attempts, locked
end

-- The smallest accepted time step later than the customer's last accepted one, or nil.
-- `steps` is a comma-separated list of the steps whose code matched (computed by the caller).
local function fresh_step(cust_key, steps)
  local last = tonumber(redis.call('HGET', cust_key, 'last_step') or '-1')
  local best = nil
  for s in string.gmatch(steps, '[^,]+') do
    local step = tonumber(s)
    if step > last and (best == nil or step < best) then best = step end
  end
  return best
end

local function has_method(ch_key, method)
  local methods = cjson.decode(redis.call('HGET', ch_key, 'methods'))
  for _, m in ipairs(methods) do
    if m == method then return true end
  end
  return false
end
