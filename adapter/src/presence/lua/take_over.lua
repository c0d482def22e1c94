-- Takes over the sockets of a node that is gone: each becomes a disconnect with grace, as if the
-- socket had dropped now, so its user gets exactly one leave timer. Unless the node is retiring
-- itself (ARGV[2] == ''), it must still be silent: another node may have taken it over already,
-- or it came back. The caller read the node's socket set and passes every room's keys.
-- KEYS: 1 nodes zset, 2 timers zset, 3 the node's sockets set (place \n socket),
--       then for each entry: its room's sockets hash, then its counts hash
-- ARGV: 1 node, 2 node timeout ms or '', 3 grace ms, then the entries (place \n socket)
-- Returns 1 when the node was taken over, 0 otherwise.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] ~= '' then
  local last = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
  if not last or last >= now - tonumber(ARGV[2]) then return 0 end
end
for i = 4, #ARGV do
  local entry = ARGV[i]
  local place, socket = string.match(entry, '^(.*)\n([^\n]*)$')
  local k = 4 + 2 * (i - 4)
  local sockets, counts = KEYS[k], KEYS[k + 1]
  if place and redis.call('SISMEMBER', KEYS[3], entry) == 1 then
    local user = redis.call('HGET', sockets, socket)
    if user then
      redis.call('HDEL', sockets, socket)
      if redis.call('HINCRBY', counts, user, -1) <= 0 then
        redis.call('HDEL', counts, user)
        redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), place .. '\n' .. user)
      end
    end
  end
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
