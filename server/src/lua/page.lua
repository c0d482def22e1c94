-- A page of a room's kept messages, read by position: the list holds the room's last messages in
-- seq order without gaps, the newest being the room's seq, so the entry of a seq is at a known
-- index and a page costs what it returns, whatever the list's length.
-- KEYS: 1 the room's sequence (see post.lua), 2 the history list
-- ARGV: 1 'before' or 'after', 2 a seq: 'before' pages back from the message before it (0: from
--       the newest), 'after' pages forward from the message after it; 3 the epoch of an 'after'
--       seq, 4 most messages, 5 most bytes of entries (the page ends with the entry that reaches
--       it)
-- Returns {epoch or false, the room's seq, known, more, {entry JSON, ...} oldest first}. known is
-- 0 for an 'after' position the room does not have: another epoch (unless the failover that
-- started this one carried that seq over), or a seq it never gave. more is 1 when the room keeps
-- messages past the page in its direction.
local sequence = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'prev_epoch', 'carried')
local epoch, seq = sequence[1], tonumber(sequence[2] or 0)
local first = seq - redis.call('LLEN', KEYS[2]) + 1
local at, limit, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])

local from, step, stop
if ARGV[1] == 'after' then
  local known = epoch and ((ARGV[3] == epoch and at <= seq)
    or (ARGV[3] == sequence[3] and at <= tonumber(sequence[4] or 0)))
  if not known then
    return {epoch, seq, 0, 0, {}}
  end
  from, step, stop = math.max(at + 1, first), 1, seq
else
  if at == 0 or at > seq + 1 then
    at = seq + 1
  end
  from, step, stop = at - 1, -1, first
end

local picked, bytes, s = {}, 0, from
while #picked < limit and bytes < max_bytes and (stop - s) * step >= 0 do
  local n = math.min(64, limit - #picked, (stop - s) * step + 1)
  local lo, hi = s - first, s - first + (n - 1) * step
  if lo > hi then
    lo, hi = hi, lo
  end
  local chunk = redis.call('LRANGE', KEYS[2], lo, hi)
  if #chunk == 0 then
    break
  end
  for i = 1, #chunk do
    if bytes >= max_bytes then
      break
    end
    local entry = step == 1 and chunk[i] or chunk[#chunk + 1 - i]
    picked[#picked + 1] = entry
    bytes = bytes + #entry
    s = s + step
  end
end
if step == -1 then
  for i = 1, math.floor(#picked / 2) do
    picked[i], picked[#picked + 1 - i] = picked[#picked + 1 - i], picked[i]
  end
end
local more = (stop - s) * step >= 0 and 1 or 0
return {epoch, seq, 1, more, picked}
