-- A claimed departure was announced: it is not claimed again. A newer claim of the same user in
-- the same room (another id) stays.
-- KEYS: 1 claims zset, 2 claimed hash
-- ARGV: 1 member (place \n user), 2 id
local claimed = redis.call('HGET', KEYS[2], ARGV[1])
if claimed and string.match(claimed, '^([^\n]*)\n') == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
