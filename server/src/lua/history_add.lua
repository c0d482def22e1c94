-- Appends a message to a room's history and gives it the room's next id.
-- KEYS: 1 sequence counter, 2 history list
-- ARGV: 1 the message as a JSON object without "id", 2 messages kept (0: none), 3 seconds both
--       keys live after the room's last message
-- Returns the message JSON with its id.
local id = string.format('%016d', redis.call('INCR', KEYS[1]))
local message = '{"id":"' .. id .. '",' .. string.sub(ARGV[1], 2)
local keep = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if keep > 0 then
  redis.call('RPUSH', KEYS[2], message)
  redis.call('LTRIM', KEYS[2], -keep, -1)
  redis.call('EXPIRE', KEYS[2], ttl)
end
redis.call('EXPIRE', KEYS[1], ttl)
return message
