-- get: one workflow whole. Reads only.
-- ARGV[3] id.
-- Answer: false (none, or its TTL ran out) or { header, input, output or false,
-- { checkpoint 1, ..., checkpoint n } } (each checkpoint: 4-byte LE step, then the output).
local id = ARGV[3]
local r = load(id)
if not r or r.expires <= NOW then return false end
local got = redis.call('HMGET', K_RECORDS, id .. ' i', id .. ' o')
local cps = {}
-- A thousand checkpoints a call (unpack takes a few thousand at most).
for from = 1, r.ncp, 1000 do
  local fields = {}
  for i = from, math.min(r.ncp, from + 999) do fields[#fields + 1] = id .. ' c' .. i end
  for _, v in ipairs(redis.call('HMGET', K_RECORDS, unpack(fields))) do
    cps[#cps + 1] = v or ''
  end
end
return { encode(r), got[1] or '', got[2] or false, cps }
