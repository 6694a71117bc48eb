-- Record one restart event in the fleet set, in the set of each shard it restarted, and in the
-- fleet's index of recent restarts.
-- KEYS[1] retention (HASH)   KEYS[2] restart_counts (HASH)   KEYS[3] restarts (ZSET)
-- KEYS[4] restart_types (HASH)   KEYS[5] recent_restarts (ZSET)
-- KEYS[6..n] restarts:<shard> (ZSET)
-- ARGV[1] event time (score)   ARGV[2] event JSON (member, unique by its id)   ARGV[3] its type
-- ARGV[4] its id   ARGV[5] seconds recent_restarts keeps
-- ARGV[6..n] the shards it restarted, in the order of KEYS[6..n]
-- ZADD NX makes a replay from the journal idempotent; one script keeps the fleet set, the
-- per-shard sets (the storm count operators take with ZCOUNT), the index, the counts and the
-- counts by type in agreement even if the connection drops, and checks the cutoff of the last
-- prune in the same step, so a replay cannot undo a prune. recent_restarts holds a small
-- member "<shard>:<id>" a restarted shard: the leader counts a window's restarts of the whole
-- fleet there, at a cost that follows the restarts, not the shard count. Every key is read
-- before anything is written: a key of the wrong type (written by hand) refuses the event
-- whole, and the journal keeps it for a later replay.
-- Returns 1 when the event is new to the fleet set, 0 when it was already there or pruned.
local expected = {'hash', 'hash', 'zset', 'hash', 'zset'}
for i = 1, #KEYS do
  local found = redis.call('TYPE', KEYS[i])['ok']
  local kind = expected[i] or 'zset'
  if found ~= 'none' and found ~= kind then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. found .. ', not a ' .. kind)
  end
end
local cutoff = tonumber(redis.call('HGET', KEYS[1], 'restarts_before'))
if cutoff and cutoff == cutoff and tonumber(ARGV[1]) < cutoff then
  return 0
end
local added = redis.call('ZADD', KEYS[3], 'NX', ARGV[1], ARGV[2])
for i = 6, #KEYS do
  redis.call('ZADD', KEYS[i], 'NX', ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[5], 'NX', ARGV[1], ARGV[i] .. ':' .. ARGV[4])
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. (tonumber(ARGV[1]) - tonumber(ARGV[5])))
if added == 1 then
  redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
  for i = 6, #ARGV do
    redis.call('HINCRBY', KEYS[2], ARGV[i] .. ':' .. ARGV[3], 1)
  end
end
return added
