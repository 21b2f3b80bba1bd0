-- bind_call: note on the call record which challenge a call is asking about, so that the
-- digits webhook (which carries only the CallSid) finds it. The challenge's own script
-- re-checks the binding against the customer's call marker.
--
-- KEYS[1] the call record
-- ARGV[1] customer id   ARGV[2] challenge id   ARGV[3] outcome
--
-- Returns {'ok'} or {'unknown_call'} when the record is gone.
local rec = KEYS[1]
if redis.call('EXISTS', rec) == 0 then return {'unknown_call'} end
redis.call('HSET', rec, 'customer_id', ARGV[1], 'challenge_id', ARGV[2], 'outcome', ARGV[3])
return {'ok'}
