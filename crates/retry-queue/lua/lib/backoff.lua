-- Helper piece (inside `rare()`): a record's backoff policy (its layout in lib/queue.lua).

-- Whether the backoff policy (plen bytes after the head) is one the script can apply.
function H.policy_ok(rec, plen)
  if plen < 2 then return false end
  local kind, jit = struct.unpack('<BB', rec, HDR + 1)
  if jit > JITTER_DECORRELATED then return false end
  if kind == POLICY_EXPONENTIAL then
    if plen ~= 26 then return false end
    local base, factor, cap = struct.unpack('<I8dI8', rec, HDR + 3)
    return cap <= MAXD and base <= cap and factor >= 1 and factor <= 100
  elseif kind == POLICY_FIXED then
    return plen == 10 and struct.unpack('<I8', rec, HDR + 3) <= MAXD
  elseif kind == POLICY_SCHEDULE then
    if plen < 12 then return false end
    local n = struct.unpack('<I2', rec, HDR + 3)
    if n < 1 or plen ~= 4 + 8 * n then return false end
    for i = 0, n - 1 do
      if struct.unpack('<I8', rec, HDR + 5 + 8 * i) > MAXD then return false end
    end
    return true
  end
  return false
end

-- The delay before retry number `attempt` (the attempt that just failed) of the task with
-- record `rec` (its policy checked by policy_ok), last delay `prev`, jitter draw r in
-- 0..65535.
function H.backoff(rec, attempt, prev, r)
  local p = HDR + 1
  local kind, jit = struct.unpack('<BB', rec, p)
  local d, lo, cap = 0, 0, 0
  if kind == POLICY_EXPONENTIAL then
    local base, factor, c = struct.unpack('<I8dI8', rec, p + 2)
    cap = c
    d = math.min(base, cap)
    lo = d
    for _ = 2, attempt do
      if d >= cap then break end
      d = math.min(cap, math.floor(d * factor))
    end
  elseif kind == POLICY_FIXED then
    d = struct.unpack('<I8', rec, p + 2)
  else
    local n = struct.unpack('<I2', rec, p + 2)
    d = struct.unpack('<I8', rec, p + 4 + (math.min(math.max(attempt, 1), n) - 1) * 8)
  end
  if jit == JITTER_FULL then
    d = math.floor(d * r / 65536)
  elseif jit == JITTER_EQUAL then
    local h = math.floor(d / 2)
    d = h + math.floor((d - h) * r / 65536)
  elseif jit == JITTER_DECORRELATED then
    local hi = math.max(lo, prev * 3)
    d = math.min(cap, lo + math.floor((hi - lo) * r / 65536))
  end
  return d
end
