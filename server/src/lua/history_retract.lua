-- Removes a message from a room's history by its id (the broadcast that should have followed
-- its append failed). history_add.lua writes every entry as '{"id":"<id>",...'.
-- KEYS: 1 history list
-- ARGV: 1 the message id
-- Returns 1 if the message was found and removed, else 0.
local prefix = '{"id":"' .. ARGV[1] .. '",'
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
-- The message was just appended: search from the newest.
for i = #entries, 1, -1 do
  if string.sub(entries[i], 1, #prefix) == prefix then
    redis.call('LREM', KEYS[1], -1, entries[i])
    return 1
  end
end
return 0
