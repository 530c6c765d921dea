-- errors-record-floor: the least an error record can cost the server. It makes only the three
-- calls any recording of the issue's behaviour needs (read the signature's state, its counter,
-- the task's slots and the correlation state; append the log entry; write the state, the
-- sample, the counter, the correlation stamp and the task's record), with the arguments an
-- `errors-record` call carries, and computes nothing. No prelude.
-- KEYS[1] a hash, KEYS[2] a stream
-- ARGV: sig, pair field, two task owner fields, sample field, kind field, state, counter,
--   task record field, task owner, the record's JSON
-- Returns: a short string (as the record script's answer).
local a = ARGV
redis.call('HMGET', KEYS[1], a[1], a[2], a[3], a[4], '~corr')
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '10000', '*', 'f', a[1], 'e', a[11])
redis.call('HSET', KEYS[1], a[1], a[7], a[5], a[11], a[6], id, a[2], a[8], a[9], a[11], a[3], a[10])
return a[8]
