-- Claim the right to announce that a condition cleared: only the leader, only once.
-- KEYS[1] leader   KEYS[2] active_alerts (HASH)   ARGV[1] this node   ARGV[2] the condition field
-- Returns 1 claimed (the field is removed), 0 already resolved, -1 not the leader.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
return redis.call('HDEL', KEYS[2], ARGV[2])
