-- A room's sequence and kept messages, read together so that they agree.
-- KEYS: 1 the room's sequence (hash of seq and epoch), 2 the history list
-- Returns {epoch or false, seq, {message JSON, ...} oldest first}.
local sequence = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
return {sequence[1], tonumber(sequence[2] or 0), redis.call('LRANGE', KEYS[2], 0, -1)}
