-- A socket of a user enters a room.
-- KEYS: 1 users hash (user -> name), 2 sockets hash (socket -> user), 3 counts hash (user -> sockets),
--       4 timers zset (member -> due ms), 5 node's sockets set (place \n socket), 6 claims zset,
--       7 claimed hash
-- ARGV: 1 user, 2 name, 3 socket, 4 timer member (place \n user), 5 node entry (place \n socket)
-- Returns 'online' when the user came online, 'rejoined' when a pending leave was cancelled
-- (nobody is told anything), 'already' otherwise.
local cancelled = redis.call('ZREM', KEYS[4], ARGV[4])
-- A departure claimed but not yet settled is not claimed again once the user is back.
redis.call('ZREM', KEYS[6], ARGV[4])
redis.call('HDEL', KEYS[7], ARGV[4])
local was_online = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
  redis.call('SADD', KEYS[5], ARGV[5])
end
if cancelled == 1 then return 'rejoined' end
if was_online then return 'already' end
return 'online'
