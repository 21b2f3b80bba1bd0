-- call_status: record a Twilio call status callback on the call's record.
--
-- Twilio does not promise order: a status may come before the call's voice webhook (or for a
-- call whose webhook never reached us, or whose record expired). Such a status writes only
-- status fields, never `first_ms`, the numbers, the candidates or an outcome, so the voice
-- webhook that follows still finds the call new (receive_call.lua) and is judged as usual.
--
-- KEYS[1] the call record
-- ARGV[1] now (ms, unused)   ARGV[2] now (RFC 3339)   ARGV[3] record TTL (ms)
-- (ARGV[1] and ARGV[2] are the caller's estimate: the script replaces both with the store's TIME, clock_now)
-- ARGV[4] CallStatus   ARGV[5] CallDuration ('' none)
--
-- Returns {'ok', number of status callbacks recorded for this call}.
ARGV[1], ARGV[2] = clock_now()  -- the store's now (TIME), not the caller's estimate
local rec = KEYS[1]
-- The history is capped: a call has a handful of statuses (initiated ... completed).
local count = tonumber(redis.call('HGET', rec, 'status_count') or '0')
if count < 16 then
  local history = redis.call('HGET', rec, 'statuses')
  local entry = ARGV[2] .. ' ' .. ARGV[4]
  if history then history = history .. ',' .. entry else history = entry end
  redis.call('HSET', rec, 'statuses', history)
end
redis.call('HSET', rec, 'status', ARGV[4], 'status_at', ARGV[2])
if ARGV[5] ~= '' then redis.call('HSET', rec, 'duration', ARGV[5]) end
-- A record this status started expires like any call record; one the voice webhook wrote
-- keeps its own expiry.
if redis.call('PTTL', rec) < 0 then redis.call('PEXPIRE', rec, tonumber(ARGV[3])) end
return {'ok', redis.call('HINCRBY', rec, 'status_count', 1)}
