-- Stores a room's next message and publishes it, in one atomic step: every node then receives a
-- room's messages in the order of their seq, which is also the order of the history. A retry of a
-- stored message (the same sender and clientId within the retry window) returns that message's
-- place and stores and publishes nothing, also when the node that stored it died before acking.
-- A new epoch starts when the room's sequence is new, and when this Redis is not the one that
-- numbered the room's last message (its replication id differs: a replica promoted by a failover,
-- which may have missed the last messages; replication is asynchronous). A seq is then never
-- given twice in one epoch: clients that see the new epoch rejoin with `since` and learn whether
-- anything is missing. The messages this Redis kept are valid under its numbering, and the list
-- names no epoch: they are the new epoch's messages with their seqs, so the history a client
-- rebuilds its view from is one epoch.
-- What is kept is compact: a history entry is the message without what the room's keys already
-- say (id, room and epoch), and a retry record is a field of a hash of the room's records, the
-- message's seq and time. Records are kept in two generations of `ARGV[5]` seconds by Redis's
-- clock, the older one dropped when a new one starts: a record lives longer than that window,
-- and no longer than three, without a key or a timer of its own.
-- KEYS: 1 the room's sequence (hash of seq, epoch, the replication id, the start of the retry
--       records' generation and, after a failover, the previous epoch and the last seq carried
--       from it), 2 the history list, 3 and 4 (with a clientId) the room's retry records of this
--       generation and of the one before
-- ARGV: 1 the history entry as a JSON object without seq, 2 messages kept (0: none), 3 seconds the
--       room's keys live after its last message, 4 the epoch to start if the room's sequence is
--       new, 5 seconds a clientId is remembered, 6 the record's field (sender and clientId),
--       7 the message's time (ms), 8 PUBLISH or SPUBLISH (sharded pub/sub: on a Redis Cluster the
--       channel shares the slot of KEYS), 9 the broadcast channel, 10 the number n of holes in
--       the broadcast, 11 .. 10+n their names (id, seq or epoch), 11+n .. 11+2n the n+1 encoded
--       parts around them (see socketio_cluster::BroadcastTemplate)
-- Returns {1, epoch, seq, false} when stored and published, {0, epoch, seq, time} for a retry.
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
  local retry = KEYS[3] ~= nil
  if retry then
    local record = redis.call('HGET', KEYS[3], ARGV[6]) or redis.call('HGET', KEYS[4], ARGV[6])
    local epoch = redis.call('HGET', KEYS[1], 'epoch')
    if record and epoch then
      local seq, time = string.match(record, '^(%d+):(%d+)$')
      return {0, epoch, tonumber(seq), tonumber(time)}
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
  end
  if numbered_by ~= replid then
    redis.call('HSET', KEYS[1], 'replid', replid)
  end
  local ttl = tonumber(ARGV[3])
  redis.call('EXPIRE', KEYS[1], ttl)

  local keep = tonumber(ARGV[2])
  if keep > 0 then
    redis.call('RPUSH', KEYS[2], '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2))
    redis.call('LTRIM', KEYS[2], -keep, -1)
    redis.call('EXPIRE', KEYS[2], ttl)
  end
  if retry then
    local window = tonumber(ARGV[5])
    local now = tonumber(redis.call('TIME')[1])
    local generation = tonumber(redis.call('HGET', KEYS[1], 'records_since') or 0)
    if now - generation >= window then
      if redis.call('EXISTS', KEYS[3]) == 1 then
        redis.call('RENAME', KEYS[3], KEYS[4])
      else
        redis.call('DEL', KEYS[4])
      end
      redis.call('HSET', KEYS[1], 'records_since', now)
    end
    redis.call('HSET', KEYS[3], ARGV[6], seq .. ':' .. ARGV[7])
    redis.call('EXPIRE', KEYS[3], 2 * window)
  end

  local values = { id = epoch .. ':' .. seq, seq = seq, epoch = epoch }
  local holes = tonumber(ARGV[10])
  local payload = { ARGV[11 + holes] }
  for i = 1, holes do
    payload[#payload + 1] = cmsgpack.pack(values[ARGV[10 + i]])
    payload[#payload + 1] = ARGV[11 + holes + i]
  end
  local publish = ARGV[8] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH'
  redis.call(publish, ARGV[9], table.concat(payload))
  return {1, epoch, seq, false}
end
