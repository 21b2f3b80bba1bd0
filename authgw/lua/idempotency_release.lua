-- idempotency_release: a refused request gives up its hold on an Idempotency-Key.
--
-- Only this request's own hold is removed (its token), so a release that comes late (after
-- its lease ended and another request took the key) changes nothing. When no request holds
-- the key any more and none created a challenge under it, the claim is deleted: the next
-- request may use the key with any body.
--
-- KEYS[1] the claim
-- ARGV[1] this request's token
--
-- Returns {'released'} (the claim is gone), {'kept'} (done, or other requests hold it),
-- {'not_held'} (this request held nothing: its lease ended and the key moved on).
local claim, token = KEYS[1], 't:' .. ARGV[1]
if redis.call('TYPE', claim)['ok'] ~= 'hash' or redis.call('HDEL', claim, token) == 0 then
  return {'not_held'}
end
if redis.call('HGET', claim, 'done') == '1' then return {'kept'} end
local fields = redis.call('HKEYS', claim)
for _, field in ipairs(fields) do
  if string.sub(field, 1, 2) == 't:' then return {'kept'} end
end
redis.call('DEL', claim)
return {'released'}
