-- A socket leaves a room: explicitly (no grace) or by disconnecting (grace).
-- KEYS: 1 users hash, 2 sockets hash, 3 counts hash, 4 timers zset, 5 node's sockets set
-- ARGV: 1 socket, 2 grace ms ('' for an explicit leave), 3 timer member prefix (place \n),
--       4 node entry (place \n socket)
-- Returns {'absent'} | {'still', user} | {'pending', user} | {'offline', user, name}
local user = redis.call('HGET', KEYS[2], ARGV[1])
if not user then return {'absent'} end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[4])
if redis.call('HINCRBY', KEYS[3], user, -1) > 0 then return {'still', user} end
redis.call('HDEL', KEYS[3], user)
if ARGV[2] == '' then
  local name = redis.call('HGET', KEYS[1], user) or ''
  redis.call('HDEL', KEYS[1], user)
  redis.call('ZREM', KEYS[4], ARGV[3] .. user)
  return {'offline', user, name}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), ARGV[3] .. user)
return {'pending', user}
