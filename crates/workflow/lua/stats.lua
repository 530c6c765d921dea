-- stats: the workflows finished in the last window. Reads only.
-- ARGV[3] window ms.
-- Answer: { header of each finished in the window }.
local since = NOW - tonumber(ARGV[3])
local finished = {}
for st = COMPLETED, CANCELLED do
  for _, id in ipairs(redis.call('ZRANGE', K_DONE[st], since, '+inf', 'BYSCORE')) do
    local h = redis.call('HGET', K_RECORDS, id)
    local r = h and decode(h)
    if r and r.expires > NOW and r.st == st then finished[#finished + 1] = h end
  end
end
return finished
