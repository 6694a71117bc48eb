-- Claim the right to announce that a condition cleared: only the leader, only once.
-- KEYS[1] leader   KEYS[2] active_alerts (HASH)   KEYS[3] resolved:<rule>:<shard> (STRING)
-- ARGV[1] this node   ARGV[2] the condition field   ARGV[3] claim token of this try
-- ARGV[4] seconds the token is kept
-- A token already in KEYS[3] is this try's own claim: redis-py resent the script after a
-- timeout, and the first one had already removed the field.
-- Returns 1 claimed (the field is removed), 0 already resolved, -1 not the leader.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if redis.call('GET', KEYS[3]) == ARGV[3] then
  return 1
end
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then
  return 0
end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
return 1
