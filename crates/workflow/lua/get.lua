-- get: one workflow whole. Reads only.
-- ARGV[3] id.
-- Answer: false (none, or its TTL ran out) or { header, input, output or false,
-- { checkpoint 1, ..., checkpoint n } } (each checkpoint: 4-byte LE step, then the output).
local id = ARGV[3]
local r = load(id)
if not r or r.expires <= NOW then return false end
local fields = { id .. ' i', id .. ' o' }
for i = 1, r.ncp do fields[#fields + 1] = id .. ' c' .. i end
local got = redis.call('HMGET', K_RECORDS, unpack(fields))
local cps = {}
for i = 1, r.ncp do cps[i] = got[i + 2] or '' end
return { encode(r), got[1] or '', got[2] or false, cps }
