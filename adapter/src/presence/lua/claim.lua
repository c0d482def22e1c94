-- Claims departures for a lease: claims whose lease ran out unsettled (their claimer died or could
-- not announce them) first, then due leave timers. A claim stays until settled (settle.lua), so
-- every departure is announced at least once; a user who has a socket in the room again (joined
-- meanwhile) is not announced.
-- KEYS: 1 timers zset (place \n user -> due ms), 2 claims zset (place \n user -> lease end ms),
--       3 claimed hash (place \n user -> id \n name)
-- ARGV: 1 key prefix, 2 max departures, 3 lease ms
-- Returns {{member, id, name}, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, lease_end = tonumber(ARGV[2]), now + tonumber(ARGV[3])
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  local claimed = redis.call('HGET', KEYS[3], member)
  local id, name = string.match(claimed or '', '^([^\n]*)\n(.*)$')
  if id then
    redis.call('ZADD', KEYS[2], lease_end, member)
    table.insert(out, {member, id, name})
  else
    redis.call('ZREM', KEYS[2], member)
  end
end
if #out >= limit then return out end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit - #out)
for i = 1, #due, 2 do
  local member, id = due[i], due[i + 1]
  redis.call('ZREM', KEYS[1], member)
  local place, user = string.match(member, '^(.*)\n([^\n]*)$')
  if place then
    local users, counts = ARGV[1] .. ':u:' .. place, ARGV[1] .. ':c:' .. place
    if (tonumber(redis.call('HGET', counts, user)) or 0) <= 0 then
      local name = redis.call('HGET', users, user)
      if name then
        redis.call('HDEL', users, user)
        redis.call('ZADD', KEYS[2], lease_end, member)
        redis.call('HSET', KEYS[3], member, id .. '\n' .. name)
        table.insert(out, {member, id, name})
      end
    end
  end
end
return out
