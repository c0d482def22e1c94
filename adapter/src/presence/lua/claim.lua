-- Claims departures for a lease: claims whose lease ran out unsettled (their claimer died or could
-- not announce them), then due leave timers. A claim stays until settled (settle.lua), so every
-- departure is announced at least once; a user who has a socket in the room again (joined
-- meanwhile) is not announced. The caller read the candidates (the earliest claims and timers)
-- and passes every key they need; each is checked again here, against the current time.
-- KEYS: 1 timers zset (place \n user -> due ms), 2 claims zset (place \n user -> lease end ms),
--       3 claimed hash (place \n user -> id \n name),
--       then for each timer candidate: its room's users hash, then its counts hash
-- ARGV: 1 lease ms, 2 number of claim candidates, then the claim candidates, then the timer
--       candidates (place \n user)
-- Returns {{member, id, name}, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_end = now + tonumber(ARGV[1])
local stale = tonumber(ARGV[2])
local out = {}
for i = 3, 2 + stale do
  local member = ARGV[i]
  local ends = tonumber(redis.call('ZSCORE', KEYS[2], member))
  if ends and ends <= now then
    local id, name = string.match(redis.call('HGET', KEYS[3], member) or '', '^([^\n]*)\n(.*)$')
    if id then
      redis.call('ZADD', KEYS[2], lease_end, member)
      table.insert(out, {member, id, name})
    else
      redis.call('ZREM', KEYS[2], member)
    end
  end
end
for i = 3 + stale, #ARGV do
  local member = ARGV[i]
  local k = 2 + 2 * (i - 2 - stale)
  local users, counts = KEYS[k], KEYS[k + 1]
  local id = redis.call('ZSCORE', KEYS[1], member)
  local user = string.match(member, '\n([^\n]*)$')
  if id and tonumber(id) <= now and user then
    redis.call('ZREM', KEYS[1], member)
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
