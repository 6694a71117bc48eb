-- Record one restart event in the fleet set and in the set of each shard it restarted.
-- KEYS[1] restarts (ZSET)   KEYS[2..n] restarts:<shard> (ZSET)
-- ARGV[1] event time (score)   ARGV[2] event JSON (member, unique by its id)
-- ZADD NX makes a replay from the journal idempotent; one script keeps the fleet set and the
-- per-shard sets (storm counts) in agreement even if the connection drops midway.
-- Returns 1 when the event is new to the fleet set, 0 when it was already there.
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], 'NX', ARGV[1], ARGV[2])
end
return added
