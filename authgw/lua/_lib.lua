-- Shared prelude, placed in front of every script by authgw.store.load_scripts.
-- Helpers only: no key names are built here; every key arrives in KEYS.

-- The bucket's shared keys, which a script that writes events takes off the end of its KEYS
-- with take_bucket() as its first statement (so its own KEYS keep the positions its header
-- states). scripts.py appends them, in this order, to the KEYS of every script that gets an
-- events key (CustomerKeys.bucket_keys):
--   PENDING  zset: the bucket's pending challenges (ids), scored by expiry (ms)
--   LOCKED   zset: the bucket's locked customers (ids), scored by the lock's end (ms; inf
--            for a lock that waits for an operator)
--   OUTBOX   stream: the bucket's events on their way to the bank's endpoints
-- The two indexes let the console count what is pending and locked now across every host
-- (ZCOUNT now +inf in each bucket): the customer's own hash and open set stay the truth, and
-- an entry whose time has passed no longer counts, whether or not a script has settled it.
local PENDING, LOCKED, OUTBOX = nil, nil, nil
local function take_bucket(KEYS)
  OUTBOX = table.remove(KEYS)
  LOCKED = table.remove(KEYS)
  PENDING = table.remove(KEYS)
end
local rung = {}

-- Append `extra`, a flat list of name, value pairs, to `fields`, leaving out empty values
-- (nil, false, ''): the fields of an event (add_event) and of an audit entry (wh_audit).
local function add_pairs(fields, extra)
  for i = 1, #(extra or {}), 2 do
    local value = extra[i + 1]
    if value ~= nil and value ~= false and value ~= '' then
      fields[#fields + 1] = extra[i]
      fields[#fields + 1] = tostring(value)
    end
  end
  return fields
end

-- The store's own clock for a stream's cut-off by age: stream ids are TIME's, so this is read
-- from TIME always (even in tests that stand their clock in for clock_ms's).
local function stream_clock_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Append one event to a customer's stream, and the same event to the bucket's outbox in the
-- same step: a transition that happened is on its way to the bank's endpoints even if every
-- gateway process dies as the script returns (the outbox shares the customer's slot). The
-- outbox entry carries the trail entry's id as `trail_id`, from which the event id is made
-- (authgw.identifiers.event_id). Then the doorbell: SPUBLISH on a channel named after the
-- outbox (the same slot), with the event's challenge id ('' for none), once per challenge per
-- script run; deliverers and long-polling requests listen there.
-- `extra` is a flat list of name, value pairs; empty values are left out (add_pairs). Both
-- streams are trimmed by age, never by count: every event is kept at least the retention,
-- whatever traffic follows it (stream ids are the store's clock: stream_clock_ms). The trail
-- lives the retention past its newest event, so a quiet customer's trail goes once all of it
-- is older than that; the outbox has no expiry (its consumer group lives on it).
-- `maxlen` is the events retention in ms (the argument kept its old name at every call
-- site; scripts' headers may still call it "events retention (ms)").
local function add_event(events_key, maxlen, at, etype, customer_id, extra)
  local retention_ms = tonumber(maxlen)
  local fields = add_pairs({'at', at, 'type', etype, 'customer_id', customer_id}, extra)
  local challenge_id = ''
  for i = 7, #fields, 2 do
    if fields[i] == 'challenge_id' then challenge_id = fields[i + 1] end
  end
  local store_ms = stream_clock_ms()
  local trail_id = redis.call('XADD', events_key, 'MINID', '~', store_ms - retention_ms, '*',
                              unpack(fields))
  redis.call('PEXPIRE', events_key, retention_ms)
  redis.call('XADD', OUTBOX, 'MINID', '~', store_ms - retention_ms, '*', 'trail_id', trail_id,
             unpack(fields))
  if not rung[challenge_id] then
    rung[challenge_id] = true
    redis.call('SPUBLISH', OUTBOX, challenge_id)
  end
end

-- A Lua list as a JSON array (cjson writes an empty table as an object).
local function json_array(list)
  if #list == 0 then return '[]' end
  return cjson.encode(list)
end

-- Designated numbers: the number-pool rule, here and nowhere else.
--
-- A customer's lines hash maps each number of the pool to '<until ms>|<challenge id>': the
-- challenge it was shown for, and that challenge's expires_at. The number stays bound to
-- that challenge until then, however the challenge ends (verified, consumed, cancelled,
-- failed, denied): no other challenge of the customer gets it, so a call on it can only reach
-- the challenge shown with it (answer_call.lua), and a replayed creation's number still points
-- at that challenge alone. Nothing frees a number early and nothing supersedes a holder: the
-- binding ends by time alone. Other customers have lines of their own (caller ID tells them
-- apart), so they share the pool.

-- Parse a lines entry: its until (ms) and challenge id (0, nil for none).
local function line_holder(value)
  if not value then return 0, nil end
  local until_ms, id = string.match(value, '^(%d+)|(.*)$')
  return tonumber(until_ms), id
end

-- The number to give a new challenge of this customer at now_ms: of the pool's numbers not
-- bound now, the one free longest (never bound first), ties in pool order. Returns it, or
-- nil and the time (ms) the first bound number is free again when every number is bound.
local function free_line(lines_key, pool, now_ms)
  if #pool == 0 then return nil, now_ms end
  local entries = redis.call('HMGET', lines_key, unpack(pool))
  local best, best_until, next_free = nil, nil, nil
  for i, number in ipairs(pool) do
    local until_ms = line_holder(entries[i])
    if until_ms <= now_ms then
      if best == nil or until_ms < best_until then best, best_until = number, until_ms end
    elseif next_free == nil or until_ms < next_free then
      next_free = until_ms
    end
  end
  return best, next_free
end

-- Bind a number to a new challenge until its expires_at (`until_ms`, a string of digits).
-- The lines hash lives as long as its latest binding and no longer: once every binding has
-- run out, every number is free, so the hash may go (a deleted customer's too).
local function bind_line(lines_key, number, id, until_ms, now_ms)
  redis.call('HSET', lines_key, number, until_ms .. '|' .. id)
  local keep = tonumber(until_ms) - now_ms
  if redis.call('PTTL', lines_key) < keep then redis.call('PEXPIRE', lines_key, keep) end
end

-- End an open challenge: set its final status, take it off the open set, and keep the
-- record for `keep_ms` from now. Its designated number stays bound until its expires_at
-- (see free_line), so `lines_key` is left as it is.
local function end_challenge(ch_key, open_key, lines_key, id, status, ended_at, keep_ms)
  redis.call('HSET', ch_key, 'status', status, 'ended_at', ended_at)
  redis.call('ZREM', open_key, id)
  redis.call('ZREM', PENDING, id)
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
-- record's TTL, set at creation, already keeps it readable for the retention period. Its
-- number's binding in `lines_key` runs out at the same instant by itself (free_line).
local function settle(ch_key, open_key, events_key, lines_key, maxlen, now_ms, id)
  local status = redis.call('HGET', ch_key, 'status')
  if (status == 'pending' or status == 'verified')
      and now_ms >= tonumber(redis.call('HGET', ch_key, 'exp')) then
    local exp_at = redis.call('HGET', ch_key, 'exp_at')
    redis.call('HSET', ch_key, 'status', 'expired', 'ended_at', exp_at)
    redis.call('ZREM', open_key, id)
    redis.call('ZREM', PENDING, id)
    add_event(events_key, maxlen, iso_from_ms(now_ms), 'challenge.expired',
              redis.call('HGET', ch_key, 'customer_id'), {'challenge_id', id, 'expires_at', exp_at})
    return 'expired'
  end
  return status
end

-- The lock model (API.md "Locks and fraud response"), the one place locks are made, judged
-- and ended. A lock is the customer's fields `locked` ('1' while locked), `locked_at`,
-- `lock_reason` (failures | fraud_report | self_lock | operator), `lock_by`, `lock_note`,
-- `lock_until_ms` and `lock_until` (a temporary lock for failures only), and `temp_locks`
-- (temporary locks so far: only an operator's unlock resets it).
--
-- The lockout policy travels as one argument, 'threshold,mode,wait s,wait max s,max temporary'
-- (mode permanent | temporary | mixed), built by authgw.challenges.locks.policy_arg.
local function lockout_policy(arg)
  local threshold, mode, wait, wait_max, max_temp =
    string.match(arg, '^(%d+),(%a+),(%d+),(%d+),(%d+)$')
  return {threshold = tonumber(threshold), mode = mode, wait = tonumber(wait),
          wait_max = tonumber(wait_max), max_temp = tonumber(max_temp)}
end

-- Whether the customer is locked as of now_ms. A temporary lock whose `until` has passed ends
-- here, when the next request looks (no sweeper): the failure count is reset, the count of
-- temporary locks is kept, and `customer.unlocked` is written with no `by` and
-- reason `lock_expired` (dated when recorded, like every event; `until` says when it ended).
local function lock_state(cust_key, events_key, maxlen, now_ms)
  local v = redis.call('HMGET', cust_key, 'locked', 'lock_until_ms', 'lock_until', 'customer_id')
  if v[1] ~= '1' then return false end
  if not v[2] or now_ms < tonumber(v[2]) then return true end
  redis.call('HSET', cust_key, 'locked', 0, 'failed', 0)
  redis.call('ZREM', LOCKED, v[4])
  redis.call('HDEL', cust_key, 'locked_at', 'lock_reason', 'lock_by', 'lock_note',
             'lock_until_ms', 'lock_until')
  add_event(events_key, maxlen, iso_from_ms(now_ms), 'customer.unlocked', v[4],
            {'reason', 'lock_expired', 'until', v[3]})
  return false
end

-- A phone number masked but for its last four digits (a lock's `by` for a caller).
local function masked_number(number)
  local digits = select(2, string.gsub(number, '%d', ''))
  local seen = 0
  return (string.gsub(number, '%d', function(d)
    seen = seen + 1
    if seen > digits - 4 then return d end
    return '*'
  end))
end

-- Lock the customer: `reason`, `by` ('' for none), `note` ('' for none), `until_ms` (nil: until
-- an operator unlocks). Writes `customer.locked` with `extra` (name, value pairs) added.
local function lock_customer(cust_key, events_key, maxlen, now_ms, reason, by, note, until_ms, extra)
  local now_iso = iso_from_ms(now_ms)
  local until_iso = ''
  redis.call('HDEL', cust_key, 'lock_by', 'lock_note', 'lock_until_ms', 'lock_until')
  redis.call('HSET', cust_key, 'locked', '1', 'locked_at', now_iso, 'lock_reason', reason)
  if by ~= '' then redis.call('HSET', cust_key, 'lock_by', by) end
  if note ~= '' then redis.call('HSET', cust_key, 'lock_note', note) end
  if until_ms then
    until_iso = iso_from_ms(until_ms)
    redis.call('HSET', cust_key, 'lock_until_ms', until_ms, 'lock_until', until_iso)
  end
  local customer_id = redis.call('HGET', cust_key, 'customer_id')
  redis.call('ZREMRANGEBYSCORE', LOCKED, '-inf', '(' .. now_ms)  -- temporary locks run out
  redis.call('ZADD', LOCKED, until_ms or 'inf', customer_id)
  local fields = {'reason', reason, 'until', until_iso, 'by', by, 'note', note}
  for _, value in ipairs(extra or {}) do fields[#fields + 1] = value end
  add_event(events_key, maxlen, now_iso, 'customer.locked', customer_id, fields)
end

-- One more consecutive failure of the customer, locking at the threshold as the policy says:
-- permanent; temporary (wait doubling per earlier temporary lock, capped); mixed (temporary
-- until `max_temp` of them, then permanent). Returns locked (true/false) and how many more
-- wrong codes lock (0 once locked).
local function count_lock_failure(cust_key, events_key, maxlen, now_ms, policy_arg, extra)
  local policy = lockout_policy(policy_arg)
  local failed = redis.call('HINCRBY', cust_key, 'failed', 1)
  if redis.call('HGET', cust_key, 'locked') == '1' then return true, 0 end
  if failed < policy.threshold then return false, policy.threshold - failed end
  local until_ms = nil
  local temporary = tonumber(redis.call('HGET', cust_key, 'temp_locks') or '0')
  if policy.mode == 'temporary' or (policy.mode == 'mixed' and temporary < policy.max_temp) then
    local wait = policy.wait
    for _ = 1, temporary do
      wait = wait * 2
      if wait >= policy.wait_max then break end
    end
    until_ms = now_ms + math.min(wait, policy.wait_max) * 1000
    redis.call('HINCRBY', cust_key, 'temp_locks', 1)
  end
  lock_customer(cust_key, events_key, maxlen, now_ms, 'failures', '', '', until_ms, extra)
  return true, 0
end

-- Clear the lock and the failure count; `operator` also resets the count of temporary locks.
local function clear_lock(cust_key, operator)
  redis.call('HSET', cust_key, 'locked', 0, 'failed', 0)
  redis.call('ZREM', LOCKED, redis.call('HGET', cust_key, 'customer_id'))
  redis.call('HDEL', cust_key, 'locked_at', 'lock_reason', 'lock_by', 'lock_note',
             'lock_until_ms', 'lock_until')
  if operator then redis.call('HDEL', cust_key, 'temp_locks') end
end

-- Whether `ids` (the open challenges the caller read) are exactly the open zset's members.
local function open_is(open_key, ids)
  if redis.call('ZCARD', open_key) ~= #ids then return false end
  for _, id in ipairs(ids) do
    if not redis.call('ZSCORE', open_key, id) then return false end
  end
  return true
end

-- Cancel every pending and verified challenge among `ch_keys`/`ids` (the open set, checked
-- with open_is before anything was written), writing `challenge.cancelled` with `reason`.
local function cancel_open(ch_keys, ids, open_key, events_key, lines_key, maxlen, now_ms, keep_ms,
                           customer_id, reason)
  local now_iso = iso_from_ms(now_ms)
  for i, id in ipairs(ids) do
    local status = settle(ch_keys[i], open_key, events_key, lines_key, maxlen, now_ms, id)
    if status == 'pending' or status == 'verified' then
      end_challenge(ch_keys[i], open_key, lines_key, id, 'cancelled', now_iso, keep_ms)
      add_event(events_key, maxlen, now_iso, 'challenge.cancelled', customer_id,
                {'challenge_id', id, 'reason', reason})
    end
  end
end

-- Count one wrong code: against the challenge's attempts and the customer's consecutive
-- failures (count_lock_failure), failing the challenge when its attempts are used up.
-- Returns attempts left, whether the customer is now locked (0|1) and failures before lock.
local function count_failure(ch_key, cust_key, open_key, events_key, lines_key, maxlen,
                             now_ms, now_iso, keep_ms, policy, id, customer_id, method)
  local attempts = redis.call('HINCRBY', ch_key, 'attempts', -1)
  add_event(events_key, maxlen, now_iso, 'challenge.failed_attempt', customer_id,
            {'challenge_id', id, 'method', method})
  local locked, before_lock = count_lock_failure(cust_key, events_key, maxlen, now_ms, policy,
                                                 {'challenge_id', id})
  if attempts <= 0 then
    end_challenge(ch_key, open_key, lines_key, id, 'failed', now_iso, keep_ms)
    add_event(events_key, maxlen, now_iso, 'challenge.failed', customer_id,
              {'challenge_id', id, 'method', method})
  end
  return attempts, locked and 1 or 0, before_lock
end

-- Whether `e164` is one of the customer's registered phones (the index is only a hint).
local function phone_registered(cust_key, e164)
  for _, phone in ipairs(cjson.decode(redis.call('HGET', cust_key, 'phones') or '[]')) do
    if phone == e164 then return true end
  end
  return false
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

-- Limits (API.md "Limits and step-up"): the limit rule, here and nowhere else.
--
-- A customer's own limits are the customer hash's fields `limit:<kind>:<field>` (kind transfer
-- | payeasy, field per_transaction | daily; absent: the default); a raise waiting for its time
-- is `raise:<kind>:<field>` = '<value, or null for the default>|<effective ms>'. 0 means no
-- limit. A raise whose time has come is in effect when it is read (no sweeper); the next
-- change of limits writes it down (fold_raises).
--
-- The defaults travel as one argument, 'transfer per_transaction,transfer daily,payeasy
-- per_transaction,payeasy daily', built by authgw.challenges.limits.defaults_arg.
local LIMIT_KINDS = {'transfer', 'payeasy'}
local LIMIT_FIELDS = {'per_transaction', 'daily'}

local function limit_defaults(arg)
  local a, b, c, d = string.match(arg, '^(%d+),(%d+),(%d+),(%d+)$')
  return {transfer = {per_transaction = tonumber(a), daily = tonumber(b)},
          payeasy = {per_transaction = tonumber(c), daily = tonumber(d)}}
end

-- The limit in effect for kind/field at now_ms, and the raise still waiting (value, ms) if any.
local function limit_in_effect(cust_key, kind, field, defaults, now_ms)
  local own, raise = unpack(redis.call('HMGET', cust_key, 'limit:' .. kind .. ':' .. field,
                                       'raise:' .. kind .. ':' .. field))
  local value = defaults[kind][field]
  if own then value = tonumber(own) end
  if raise then
    local to, at = string.match(raise, '^(%w+)|(%d+)$')
    local to_value = value
    if to == 'null' then to_value = defaults[kind][field] else to_value = tonumber(to) end
    if now_ms >= tonumber(at) then return to_value, nil, nil end
    return value, to_value, tonumber(at)
  end
  return value, nil, nil
end

-- Whether limit `a` lets more through than limit `b` (0 is no limit).
local function looser(a, b)
  return b ~= 0 and (a == 0 or a > b)
end

-- Write down the raises whose time has come (before a change is judged against them).
local function fold_raises(cust_key, defaults, now_ms)
  for _, kind in ipairs(LIMIT_KINDS) do
    for _, field in ipairs(LIMIT_FIELDS) do
      local raise = redis.call('HGET', cust_key, 'raise:' .. kind .. ':' .. field)
      if raise then
        local to, at = string.match(raise, '^(%w+)|(%d+)$')
        if now_ms >= tonumber(at) then
          if to == 'null' then
            redis.call('HDEL', cust_key, 'limit:' .. kind .. ':' .. field)
          else
            redis.call('HSET', cust_key, 'limit:' .. kind .. ':' .. field, to)
          end
          redis.call('HDEL', cust_key, 'raise:' .. kind .. ':' .. field)
        end
      end
    end
  end
end

-- The calendar day of now_ms in the bank's zone. `windows` is 'start ms|YYYY-MM-DD,...,end ms':
-- consecutive local days around the caller's estimate of now (authgw.challenges.limits
-- .day_windows, from zoneinfo), so the store's clock, not the host's, picks the day. Returns the
-- day and the ms its end falls at, or nil when now lies outside every window (fail closed).
local function day_of(windows, now_ms)
  local starts, labels = {}, {}
  for start, label in string.gmatch(windows, '(-?%d+)|([%d-]+)') do
    starts[#starts + 1], labels[#labels + 1] = tonumber(start), label
  end
  local last = tonumber(string.match(windows, '(-?%d+)$'))
  starts[#starts + 1] = last
  for i = 1, #labels do
    if now_ms >= starts[i] and now_ms < starts[i + 1] then return labels[i], starts[i + 1] end
  end
  return nil, nil
end

-- The usage book: the usage hash holds one field per challenge whose amount counts, id ->
-- '<kind>|<day>|<amount>', and per kind the consumed total of a day, 'sum:<kind>' ->
-- '<kind>|<day>|<total>'. A challenge's amount counts while it is open and not past its
-- expiry (the open zset, scored by expiry: an ending script takes it off, and a challenge
-- nobody touched past its expiry no longer counts, so no sweeper is needed), and once
-- consumed, in its day's total (count_consumed). Today's usage of `kind` at now_ms; `prune`
-- drops the fields that no longer count (a creation does; a read does not write).
local function used_today(usage_key, open_key, kind, day, now_ms, prune)
  local entries = redis.call('HGETALL', usage_key)
  local used = 0
  for i = 1, #entries, 2 do
    local name, value = entries[i], entries[i + 1]
    local k, d, amount = string.match(value, '^(%a+)|([%d-]+)|(%d+)$')
    local counts = d == day
    if counts and string.sub(name, 1, 4) ~= 'sum:' then
      local expiry = redis.call('ZSCORE', open_key, name)
      counts = expiry ~= false and expiry ~= nil and tonumber(expiry) > now_ms
    end
    if counts then
      if k == kind then used = used + tonumber(amount) end
    elseif prune then
      redis.call('HDEL', usage_key, name)
    end
  end
  return used
end

-- Book a new challenge's amount against its day; the book lives a day past the day's end.
local function count_usage(usage_key, id, kind, day, amount, day_end_ms, now_ms)
  redis.call('HSET', usage_key, id, kind .. '|' .. day .. '|' .. amount)
  redis.call('PEXPIRE', usage_key, day_end_ms - now_ms + 86400000)
end

-- A consumed challenge's amount moves from its own field into its day's total, where it counts
-- for the rest of that day (a total of an earlier day is replaced; one of a later day stays).
local function count_consumed(usage_key, id)
  local entry = redis.call('HGET', usage_key, id)
  if not entry then return end
  redis.call('HDEL', usage_key, id)
  local kind, day, amount = string.match(entry, '^(%a+)|([%d-]+)|(%d+)$')
  local total = redis.call('HGET', usage_key, 'sum:' .. kind)
  local sum = 0
  if total then
    local _, sum_day, sum_amount = string.match(total, '^(%a+)|([%d-]+)|(%d+)$')
    if sum_day > day then return end
    if sum_day == day then sum = tonumber(sum_amount) end
  end
  redis.call('HSET', usage_key, 'sum:' .. kind, kind .. '|' .. day .. '|' .. string.format('%d', sum + tonumber(amount)))
end

-- Judge a new challenge's amount against the customer's limits of its kind: nil when it
-- passes, else {'limit_exceeded', limit kind, limit, used, remaining} (per_transaction first).
local function judge_limits(cust_key, usage_key, open_key, kind, amount, defaults, day, now_ms)
  local per_tx = limit_in_effect(cust_key, kind, 'per_transaction', defaults, now_ms)
  if per_tx > 0 and amount > per_tx then
    return {'limit_exceeded', 'per_transaction', per_tx, 0, per_tx}
  end
  local daily = limit_in_effect(cust_key, kind, 'daily', defaults, now_ms)
  local used = used_today(usage_key, open_key, kind, day, now_ms, true)
  if daily > 0 and used + amount > daily then
    return {'limit_exceeded', 'daily', daily, used, daily - used}
  end
  return nil
end

-- The new-phone hold (API.md "New phone hold"): the customer hash's `phones_added` maps each
-- registered phone to when it was added (ms). Re-registering a phone keeps its time; a phone
-- removed and added again starts anew. A phone with no recorded time (registered before the
-- gateway recorded them) is not held.
local function phones_added(cust_key, phones, now_ms)
  local before = cjson.decode(redis.call('HGET', cust_key, 'phones_added') or '{}')
  local after = {}
  local any = false
  for _, phone in ipairs(phones) do
    after[phone] = before[phone] or string.format('%d', now_ms)
    any = true
  end
  if not any then return '{}' end
  return cjson.encode(after)
end

-- Whether `phone` was added less than `hold_ms` before now_ms.
local function phone_on_hold(cust_key, phone, hold_ms, now_ms)
  if hold_ms <= 0 then return false end
  local added = cjson.decode(redis.call('HGET', cust_key, 'phones_added') or '{}')[phone]
  return added ~= nil and now_ms - tonumber(added) < hold_ms
end

-- Step-up (API.md "Limits and step-up"): the step-up rule, here and nowhere else.
--
-- The policy travels as one JSON argument, {"new_payee": [methods], "step_up_amount": N,
-- "step_up_methods": [methods], "dual_factor_amount": N} (authgw.challenges.limits.policy_arg;
-- an empty list or 0: that rule is off). Given the methods the customer can use among those
-- asked for, it returns the methods left and the methods required (nil: any one of them), or
-- nil and the name of the rule the customer cannot meet.
local function intersect(methods, allowed)
  local keep, out = {}, {}
  for _, m in ipairs(allowed) do keep[m] = true end
  for _, m in ipairs(methods) do
    if keep[m] then out[#out + 1] = m end
  end
  return out
end

local function step_up(policy_json, methods, amount, new_payee)
  local policy = cjson.decode(policy_json)
  if new_payee and #policy['new_payee'] > 0 then
    methods = intersect(methods, policy['new_payee'])
    if #methods == 0 then return nil, 'new_payee' end
  end
  local at = tonumber(policy['step_up_amount'])
  if at > 0 and amount >= at and #policy['step_up_methods'] > 0 then
    methods = intersect(methods, policy['step_up_methods'])
    if #methods == 0 then return nil, 'step_up' end
  end
  local dual = tonumber(policy['dual_factor_amount'])
  if dual > 0 and amount >= dual then
    local both = intersect({'callback', 'totp'}, methods)
    if #both < 2 then return nil, 'dual_factor' end
    return both, both
  end
  return methods, nil
end

-- One factor of a challenge has verified (`extra`: the event's further name, value pairs). A
-- challenge without `required` is verified by it; one with `required` (dual factor) records
-- the factor (`factor_<method>`) and is verified once every required factor is, with
-- `verified_by` the factors joined ('callback+totp'); until then `challenge.factor_verified` is
-- written. Returns whether the challenge is now verified.
local function verify_factor(ch_key, events_key, maxlen, now_iso, customer_id, id, method, extra)
  local required = redis.call('HGET', ch_key, 'required')
  local fields = {'challenge_id', id, 'method', method}
  for _, value in ipairs(extra or {}) do fields[#fields + 1] = value end
  if not required then
    redis.call('HSET', ch_key, 'status', 'verified', 'verified_by', method, 'verified_at', now_iso)
    redis.call('ZREM', PENDING, id)
    add_event(events_key, maxlen, now_iso, 'challenge.verified', customer_id, fields)
    return true
  end
  redis.call('HSET', ch_key, 'factor_' .. method, now_iso)
  local names = cjson.decode(required)
  for _, m in ipairs(names) do
    if not redis.call('HGET', ch_key, 'factor_' .. m) then
      add_event(events_key, maxlen, now_iso, 'challenge.factor_verified', customer_id, fields)
      return false
    end
  end
  table.sort(names)
  local by = table.concat(names, '+')
  redis.call('HSET', ch_key, 'status', 'verified', 'verified_by', by, 'verified_at', now_iso)
  redis.call('ZREM', PENDING, id)
  fields[4] = by
  add_event(events_key, maxlen, now_iso, 'challenge.verified', customer_id, fields)
  return true
end

-- Mark a challenge verified by `method` ('totp' or 'callback'; `call`: {from, sid, mode} of the
-- call that did it): the one rule for every way a challenge verifies. A right answer resets
-- the customer's consecutive failures; a dual-factor challenge (verify_factor) stays pending
-- until its other factor has verified too. Returns whether the challenge is now verified.
local function mark_verified(ch_key, cust_key, events_key, maxlen, now_iso, customer_id, id, method, call)
  local extra = {}
  if call then
    redis.call('HSET', ch_key, 'verified_from', call.from, 'call_sid', call.sid)
    extra = {'from', call.from, 'call_sid', call.sid}
    if call.mode then extra[#extra + 1] = 'mode'; extra[#extra + 1] = call.mode end
  end
  redis.call('HSET', cust_key, 'failed', 0)
  return verify_factor(ch_key, events_key, maxlen, now_iso, customer_id, id, method, extra)
end

-- Whether `method` has already verified its part of a dual-factor challenge.
local function factor_done(ch_key, method)
  return redis.call('HGET', ch_key, 'factor_' .. method) ~= false
end

-- New payees: the payees zset holds the payee digests (without the amount) of the customer's
-- consumed challenges, scored by when, the PAYEES_KEPT most recent; it lives `keep_ms` (the
-- events retention) past the last consumption.
local PAYEES_KEPT = 1000

local function remember_payee(payees_key, digest, now_ms, keep_ms)
  if not digest then return end
  redis.call('ZADD', payees_key, now_ms, digest)
  redis.call('ZREMRANGEBYRANK', payees_key, 0, -PAYEES_KEPT - 1)
  redis.call('PEXPIRE', payees_key, keep_ms)
end

-- The limits object as put_limits and read_limits answer it: each kind's limits in effect,
-- raises still waiting, and today's usage (usage book `usage_key`, open zset `open_key`).
local function limits_answer(cust_key, usage_key, open_key, defaults, day, now_ms)
  local out = {'ok'}
  for _, kind in ipairs(LIMIT_KINDS) do
    for _, field in ipairs(LIMIT_FIELDS) do
      local value, raise_to, raise_at = limit_in_effect(cust_key, kind, field, defaults, now_ms)
      out[#out + 1] = kind .. ':' .. field
      out[#out + 1] = string.format('%d', value)
      if raise_to then
        out[#out + 1] = 'raise:' .. kind .. ':' .. field
        out[#out + 1] = string.format('%d', raise_to) .. '|' .. iso_from_ms(raise_at)
      end
    end
    out[#out + 1] = kind .. ':used_today'
    out[#out + 1] = string.format('%d', used_today(usage_key, open_key, kind, day, now_ms, false))
  end
  return out
end

-- Outbound webhooks (authgw.outbound): the delivery rules, here and nowhere else.
--
-- Every webhook key is in the `{wh}` slot. The endpoints hash maps a name to its record,
-- JSON: url, events (patterns), enabled, created_ms, created_at, incarnation, secret and
-- previous (sealed), previous_until_ms. Each endpoint has the nine keys of
-- authgw.keys.EndpointKeys, in that order (wh_keys). A delivery record is JSON: id, event_id,
-- type, state (pending | delivered | failed), attempts (tries claimed so far), base (attempts
-- when this round of the schedule began: 0, or the count at a manual retry), open (a claim
-- is out and has not been recorded), last_status, last_error, next_ms, created_ms, event_ms,
-- seq (creation order). Times in records are strings of ms, never floats.

-- The nine keys of one endpoint, from KEYS[first] on.
local function wh_keys(first)
  return {records = KEYS[first], bodies = KEYS[first + 1], seen = KEYS[first + 2],
          due = KEYS[first + 3], lag = KEYS[first + 4], pending = KEYS[first + 5],
          delivered = KEYS[first + 6], failed = KEYS[first + 7], done = KEYS[first + 8]}
end
local WH_KEYS_PER_ENDPOINT = 9

local function wh_ms(value)
  return string.format('%d', value)
end

-- Whether the patterns (a list: '*', 'prefix.*' or an exact type) take `etype`.
local function wh_matches(patterns, etype)
  for _, pattern in ipairs(patterns) do
    if pattern == '*' or pattern == etype then return true end
    if string.sub(pattern, -2) == '.*' then
      local prefix = string.sub(pattern, 1, -2)
      if string.sub(etype, 1, #prefix) == prefix then return true end
    end
  end
  return false
end

-- Whether an endpoint gets an event: enabled, its patterns match, and it existed when the
-- event happened (an endpoint made later is not sent the past).
local function wh_wants(endpoint, etype, event_ms)
  return endpoint.enabled and tonumber(endpoint.created_ms) <= event_ms
    and wh_matches(endpoint.events, etype)
end

local function wh_save(k, rec)
  redis.call('HSET', k.records, rec.id, cjson.encode(rec))
end

-- A new pending delivery, due now; its record, JSON.
local function wh_create(k, id, event_id, etype, event_ms, body, now_ms)
  local seq = redis.call('HINCRBY', k.records, '#seq', 1)
  local rec = {id = id, event_id = event_id, type = etype, state = 'pending', attempts = 0,
               base = 0, open = false, last_status = '', last_error = '', next_ms = wh_ms(now_ms),
               created_ms = wh_ms(now_ms), event_ms = wh_ms(event_ms), seq = wh_ms(seq)}
  redis.call('HSET', k.bodies, id, body)
  wh_save(k, rec)
  redis.call('ZADD', k.due, now_ms, id)
  redis.call('ZADD', k.lag, event_ms, id)
  redis.call('ZADD', k.pending, seq, id)
  return cjson.encode(rec)
end

-- A pending delivery becomes `state` (delivered | failed) at now_ms.
local function wh_finish(k, rec, state, now_ms)
  redis.call('ZREM', k.due, rec.id)
  redis.call('ZREM', k.lag, rec.id)
  redis.call('ZREM', k.pending, rec.id)
  redis.call('ZADD', k[state], rec.seq, rec.id)
  redis.call('ZADD', k.done, now_ms, rec.id)
  rec.state, rec.next_ms, rec.open = state, '', false
  wh_save(k, rec)
end

-- Drop up to `budget` deliveries that finished more than `keep_ms` ago (no sweeper: each
-- script that finishes deliveries takes a few).
local function wh_prune(k, now_ms, keep_ms, budget)
  local old = redis.call('ZRANGEBYSCORE', k.done, '-inf', now_ms - keep_ms, 'LIMIT', 0, budget)
  for _, id in ipairs(old) do
    local raw = redis.call('HGET', k.records, id)
    if raw then
      local event_id = cjson.decode(raw).event_id
      if redis.call('HGET', k.seen, event_id) == id then redis.call('HDEL', k.seen, event_id) end
    end
    redis.call('HDEL', k.records, id)
    redis.call('HDEL', k.bodies, id)
    redis.call('ZREM', k.delivered, id)
    redis.call('ZREM', k.failed, id)
    redis.call('ZREM', k.done, id)
  end
end

-- An operator's change to the webhooks (a PUT, a delete, a rotation, a retry, a test), on the
-- {wh} slot's audit stream, written by the script that makes the change: who (`by`, the
-- client name), when (`at`, RFC 3339), what (`action`, `webhook`, then `extra`: a flat list of
-- name, value pairs; empty values are left out). Kept by age like the events (`retention_ms`,
-- the events retention): stream ids are the store's clock, so the cut-off is taken from TIME,
-- and the stream lives the retention past its newest entry.
local function wh_audit(audit_key, retention_ms, at, by, action, name, extra)
  local fields = add_pairs({'at', at, 'by', by, 'action', action, 'webhook', name}, extra)
  local keep = tonumber(retention_ms)
  redis.call('XADD', audit_key, 'MINID', '~', stream_clock_ms() - keep, '*', unpack(fields))
  redis.call('PEXPIRE', audit_key, keep)
end
