-- Delete a webhook endpoint and every delivery of it, in one step: nothing more is claimed
-- for it, and a deliverer's late record of an old delivery finds nothing to change.
-- KEYS[1] webhook endpoints hash, KEYS[2..10] the endpoint's keys (authgw.keys.EndpointKeys)
-- ARGV[1] name
-- Returns {'ok'} or {'webhook_not_found'}.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {'webhook_not_found'} end
for i = 2, 1 + WH_KEYS_PER_ENDPOINT do
  redis.call('UNLINK', KEYS[i])
end
return {'ok'}
