-- Claim the right to send one alert: only the current leader, at most once per dedupe window.
-- KEYS[1] leader   KEYS[2] alert:<rule>[:<shard>]
-- ARGV[1] this node   ARGV[2] dedupe seconds   ARGV[3] claim value: "<epoch>:<token of this try>"
-- Atomic, so that two nodes that both briefly believe they lead cannot both send it. A claim
-- that already holds this try's token is ours: redis-py resent the script after a timeout.
-- Returns 1 claimed, 0 muted (sent within the window), -1 not the leader.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local held = redis.call('GET', KEYS[2])
if held == ARGV[3] then
  return 1
end
if held then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
return 1
