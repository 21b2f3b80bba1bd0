-- console_count: add to one count of the console's overview (authgw.console.stats): a field of
-- a minute's or a day's hash, kept a while and then dropped by expiry.
--
-- KEYS[1] the minute's or the day's counts (hash, hash tag {stats})
-- ARGV[1] the field   ARGV[2] how many to add   ARGV[3] how long the hash is kept (ms)
--
-- Returns {'ok'}.
redis.call('HINCRBY', KEYS[1], ARGV[1], tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'ok'}
