-- Takes over the sockets of nodes that are gone: each becomes a disconnect with grace, as if the
-- socket had dropped now, so its user gets exactly one leave timer.
-- Normal use: records this node's heartbeat, then reaps nodes silent for longer than the timeout,
-- but only when this node's own previous heartbeat is recent: after an outage of Redis (or of this
-- node's link to it) every heartbeat is stale, and nobody must be reaped for that.
-- Retiring (ARGV[3] == ''): reaps this node itself, which is leaving on purpose.
-- KEYS: 1 nodes zset (node -> last heartbeat ms), 2 timers zset
-- ARGV: 1 key prefix, 2 this node, 3 node timeout ms or '', 4 grace ms
-- Returns {state, nodes reaped...}: state is 'forgotten' when this node had no heartbeat recorded
-- (it just started, was reaped while alive, or Redis lost its data), 'known' otherwise.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone
local state = 'known'
if ARGV[3] == '' then
  gone = {ARGV[2]}
else
  local cutoff = now - tonumber(ARGV[3])
  local previous = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]))
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  if not previous then return {'forgotten'} end
  if previous < cutoff then return {state} end
  gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
end
for _, node in ipairs(gone) do
  local set = ARGV[1] .. ':n:' .. node
  for _, entry in ipairs(redis.call('SMEMBERS', set)) do
    local place, socket = string.match(entry, '^(.*)\n([^\n]*)$')
    if place then
      local sockets, counts = ARGV[1] .. ':s:' .. place, ARGV[1] .. ':c:' .. place
      local user = redis.call('HGET', sockets, socket)
      if user then
        redis.call('HDEL', sockets, socket)
        if redis.call('HINCRBY', counts, user, -1) <= 0 then
          redis.call('HDEL', counts, user)
          redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), place .. '\n' .. user)
        end
      end
    end
  end
  redis.call('DEL', set)
  redis.call('ZREM', KEYS[1], node)
end
table.insert(gone, 1, state)
return gone
