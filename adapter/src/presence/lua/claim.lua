-- Claims due leave timers: each is removed here, atomically, so exactly one node announces it.
-- A user who has a socket in the room again (joined meanwhile) is not announced.
-- KEYS: 1 timers zset
-- ARGV: 1 key prefix, 2 max timers to claim
-- Returns {{member, name}, ...} of users who went offline.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local place, user = string.match(member, '^(.*)\n([^\n]*)$')
  if place then
    local users, counts = ARGV[1] .. ':u:' .. place, ARGV[1] .. ':c:' .. place
    if (tonumber(redis.call('HGET', counts, user)) or 0) <= 0 then
      local name = redis.call('HGET', users, user)
      if name then
        redis.call('HDEL', users, user)
        table.insert(out, {member, name})
      end
    end
  end
end
return out
