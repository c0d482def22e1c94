-- Stores a room's next message and publishes it, in one atomic step: every node then receives a
-- room's messages in the order of their seq, which is also the order of the history. A retry of a
-- stored message (the same sender and clientId within the retry window) returns that message and
-- stores and publishes nothing, also when the node that stored it died before acking.
-- KEYS: 1 the room's sequence (hash of seq and epoch), 2 the history list,
--       3 (optional) the record of the sender's clientId
-- ARGV: 1 the message as a JSON object without id, seq and epoch, 2 messages kept (0: none),
--       3 seconds the room's keys live after its last message, 4 the epoch to start if the room's
--       sequence is new, 5 seconds a clientId is remembered, 6 PUBLISH or SPUBLISH (sharded
--       pub/sub: on a Redis Cluster the channel shares the slot of KEYS), 7 the broadcast channel,
--       8 the number n of holes in the broadcast, 9 .. 8+n their names (id, seq or epoch),
--       9+n .. 9+2n the n+1 encoded parts around them (see socketio_cluster::BroadcastTemplate)
-- Returns {1, message JSON} when stored and published, {0, stored message JSON} for a retry.
if KEYS[3] then
  local stored = redis.call('GET', KEYS[3])
  if stored then
    return {0, stored}
  end
end

local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if seq == 1 or not epoch then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local ttl = tonumber(ARGV[3])
redis.call('EXPIRE', KEYS[1], ttl)

local id = string.format('%s:%d', epoch, seq)
local message = string.format('{"id":"%s","seq":%d,"epoch":"%s",', id, seq, epoch)
  .. string.sub(ARGV[1], 2)

local keep = tonumber(ARGV[2])
if keep > 0 then
  redis.call('RPUSH', KEYS[2], message)
  redis.call('LTRIM', KEYS[2], -keep, -1)
  redis.call('EXPIRE', KEYS[2], ttl)
end
if KEYS[3] then
  redis.call('SET', KEYS[3], message, 'EX', tonumber(ARGV[5]))
end

local values = { id = id, seq = seq, epoch = epoch }
local holes = tonumber(ARGV[8])
local payload = { ARGV[9 + holes] }
for i = 1, holes do
  payload[#payload + 1] = cmsgpack.pack(values[ARGV[8 + i]])
  payload[#payload + 1] = ARGV[9 + holes + i]
end
local publish = ARGV[6] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH'
redis.call(publish, ARGV[7], table.concat(payload))
return {1, message}
