-- A room's sequence and kept messages, read together so that they agree.
-- KEYS: 1 the room's sequence (hash of seq and epoch, and after a failover the previous epoch and
--       the last seq carried from it into this one), 2 the history list
-- Returns {epoch or false, seq, {message JSON, ...} oldest first, previous epoch or false,
-- carried seq}.
local sequence = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'prev_epoch', 'carried')
return {sequence[1], tonumber(sequence[2] or 0), redis.call('LRANGE', KEYS[2], 0, -1),
  sequence[3], tonumber(sequence[4] or 0)}
