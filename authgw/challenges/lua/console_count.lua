-- console_count: count one outcome for the console's overview (authgw.console.stats): a field
-- of the minute's hash and a field of the day's, each kept a while and then dropped by expiry.
--
-- KEYS[1] the minute's counts (hash)   KEYS[2] the day's counts (hash); one hash tag, {stats}
-- ARGV[1] the minute's field ('' none)   ARGV[2] the day's field ('' none)
-- ARGV[3] how long the minute's hash is kept (ms)   ARGV[4] how long the day's (ms)
--
-- Returns {'ok'}.
if ARGV[1] ~= '' then
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if ARGV[2] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return {'ok'}
