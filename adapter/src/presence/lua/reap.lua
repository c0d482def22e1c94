-- Records this node's presence heartbeat and names the nodes gone silent, but only when this
-- node's own previous heartbeat is recent: after an outage of Redis (or of this node's link to
-- it) every heartbeat is stale, and nobody must be reaped for that. The caller takes each one
-- over with take_over.lua.
-- KEYS: 1 nodes zset (node -> last heartbeat ms)
-- ARGV: 1 this node, 2 node timeout ms
-- Returns {state, silent nodes...}: state is 'forgotten' when this node had no heartbeat recorded
-- (it just started, was reaped while alive, or Redis lost its data), 'known' otherwise.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[2])
local previous = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
redis.call('ZADD', KEYS[1], now, ARGV[1])
if not previous then return {'forgotten'} end
if previous < cutoff then return {'known'} end
local silent = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
table.insert(silent, 1, 'known')
return silent
