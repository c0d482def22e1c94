-- Appends a message to a room's history and gives it the room's next id.
-- KEYS: 1 sequence counter, 2 history list
-- ARGV: 1 the message as a JSON object without "id", 2 messages kept (0: none)
-- Returns the message JSON with its id.
local id = string.format('%016d', redis.call('INCR', KEYS[1]))
local message = '{"id":"' .. id .. '",' .. string.sub(ARGV[1], 2)
local keep = tonumber(ARGV[2])
if keep > 0 then
  redis.call('RPUSH', KEYS[2], message)
  redis.call('LTRIM', KEYS[2], -keep, -1)
end
return message
