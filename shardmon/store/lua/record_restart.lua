-- Record one restart event in the fleet set and in the set of each shard it restarted.
-- KEYS[1] retention (HASH)   KEYS[2] restart_counts (HASH)   KEYS[3] restarts (ZSET)
-- KEYS[4] restart_types (HASH)   KEYS[5..n] restarts:<shard> (ZSET)
-- ARGV[1] event time (score)   ARGV[2] event JSON (member, unique by its id)   ARGV[3] its type
-- ARGV[4..n] the shards it restarted, in the order of KEYS[5..n]
-- ZADD NX makes a replay from the journal idempotent; one script keeps the fleet set, the
-- per-shard sets (storm counts), the counts and the counts by type in agreement even if the
-- connection drops, and checks the cutoff of the last prune in the same step, so a replay
-- cannot undo a prune. Every key is read before anything is written: a key of the wrong type
-- (written by hand) refuses the event whole, and the journal keeps it for a later replay.
-- Returns 1 when the event is new to the fleet set, 0 when it was already there or pruned.
local expected = {'hash', 'hash', 'zset', 'hash'}
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
for i = 5, #KEYS do
  redis.call('ZADD', KEYS[i], 'NX', ARGV[1], ARGV[2])
end
if added == 1 then
  redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
  for i = 4, #ARGV do
    redis.call('HINCRBY', KEYS[2], ARGV[i] .. ':' .. ARGV[3], 1)
  end
end
return added
