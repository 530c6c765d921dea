-- An agent's stored record, decoded and checked whole (shared by the agent scripts, which
-- include this file first): decode_record(raw) -> the record, or nil and why not.
-- The largest stored time (`MAX_STORED` in src/wire.rs).
local MAX = 9007199254740991
local function decode_record(raw)
  local ok, record = pcall(cjson.decode, raw)
  if not ok or type(record) ~= 'table' then return nil, 'the record is not a JSON object' end
  if type(record.status) ~= 'string' or record.status == '' then
    return nil, 'status is not a name'
  end
  if type(record.task) ~= 'string' then return nil, 'task is not a string' end
  local caps = record.caps
  if type(caps) ~= 'table' or (#caps == 0 and next(caps) ~= nil) then
    return nil, 'caps is not a list'
  end
  for _, cap in ipairs(caps) do
    if type(cap) ~= 'string' then return nil, 'caps holds a value that is not a string' end
  end
  for _, what in ipairs({ 'updated_ms', 'expires_ms' }) do
    local n = record[what]
    if type(n) ~= 'number' or not (n >= 0 and n <= MAX and n % 1 == 0) then
      -- Printable ASCII only: an error reply that is not valid UTF-8 cannot be decoded.
      local shown = string.gsub(string.sub(tostring(n), 1, 40), '[^ -~]', '?')
      return nil, what .. ' is ' .. string.format('%q', shown)
        .. ', not a whole number in 0..' .. string.format('%d', MAX)
    end
  end
  return record
end
