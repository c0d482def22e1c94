-- Stores a room's next message and publishes it, in one atomic step: every node then receives a
-- room's messages in the order of their seq, which is also the order of the history. A retry of a
-- stored message (the same sender and clientId within the retry window) returns that message and
-- stores and publishes nothing, also when the node that stored it died before acking.
-- A new epoch starts when the room's sequence is new, and when this Redis is not the one that
-- numbered the room's last message (its replication id differs: a replica promoted by a failover,
-- which may have missed the last messages; replication is asynchronous). A seq is then never
-- given twice in one epoch: clients that see the new epoch rejoin with `since` and learn whether
-- anything is missing. The messages this Redis kept are valid under its numbering: they move to
-- the new epoch with their seqs, so the history a client rebuilds its view from is one epoch.
-- KEYS: 1 the room's sequence (hash of seq, epoch, the replication id and, after a failover, the
--       previous epoch and the last seq carried from it), 2 the history list,
--       3 (optional) the record of the sender's clientId
-- ARGV: 1 the message as a JSON object without id, seq and epoch, 2 messages kept (0: none),
--       3 seconds the room's keys live after its last message, 4 the epoch to start if the room's
--       sequence is new, 5 seconds a clientId is remembered, 6 PUBLISH or SPUBLISH (sharded
--       pub/sub: on a Redis Cluster the channel shares the slot of KEYS), 7 the broadcast channel,
--       8 the number n of holes in the broadcast, 9 .. 8+n their names (id, seq or epoch),
--       9+n .. 9+2n the n+1 encoded parts around them (see socketio_cluster::BroadcastTemplate)
-- Returns {1, message JSON} when stored and published, {0, stored message JSON} for a retry.
--
-- A function library, not a script, for the one thing a script cannot keep between calls: this
-- Redis's replication id, asked of INFO at most once a second instead of for every message. The
-- library's state is this instance's own: a replica never runs a post, and a replica's full
-- resync loads its libraries afresh, so a promoted replica asks before it numbers anything. Only
-- a master demoted and promoted again within one second, with no full resync in between, could
-- answer from a stale id.
-- The code that loads it appends the registration of `post` under a name of this code's version,
-- so nodes of two versions in one cluster each call their own.

local own = { replid = nil, asked_at = nil }

local function replication_id()
  local now = redis.call('TIME')[1]
  if own.asked_at ~= now then
    own.replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)') or ''
    own.asked_at = now
  end
  return own.replid
end

local function post(KEYS, ARGV)
  if KEYS[3] then
    local stored = redis.call('GET', KEYS[3])
    if stored then
      return {0, stored}
    end
  end

  local replid = replication_id()
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  local epoch = redis.call('HGET', KEYS[1], 'epoch')
  local numbered_by = redis.call('HGET', KEYS[1], 'replid')
  local failed_over = seq > 1 and epoch and numbered_by and numbered_by ~= replid
  if seq == 1 or not epoch or failed_over then
    if failed_over then
      -- Seqs up to the last one this Redis kept mean the same messages in both epochs: a client
      -- whose `since` is among them recovers in the new one (see read.lua).
      redis.call('HSET', KEYS[1], 'prev_epoch', epoch, 'carried', seq - 1)
    end
    epoch = ARGV[4]
    redis.call('HSET', KEYS[1], 'epoch', epoch)
    -- The list and the sequence were replicated together: their seqs agree.
    local kept = failed_over and redis.call('LRANGE', KEYS[2], 0, -1) or {}
    if #kept > 0 then
      redis.call('DEL', KEYS[2])
      for _, old in ipairs(kept) do
        local n, rest = string.match(old, '^{"id":"[^"]*","seq":(%d+),"epoch":"[^"]*",(.*)$')
        if n then
          old = string.format('{"id":"%s:%s","seq":%s,"epoch":"%s",', epoch, n, n, epoch) .. rest
        end
        redis.call('RPUSH', KEYS[2], old)
      end
    end
  end
  if numbered_by ~= replid then
    redis.call('HSET', KEYS[1], 'replid', replid)
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
end
