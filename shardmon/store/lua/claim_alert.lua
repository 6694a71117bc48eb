-- Claim the right to send alerts: only the current leader, each at most once per dedupe window.
-- KEYS[1] leader   KEYS[2..n] alert:<rule>[:<shard>], one a condition of this alert
-- ARGV[1] this node   ARGV[2] dedupe seconds   ARGV[3] claim value: "<epoch>:<token of this try>"
-- Atomic, so that two nodes that both briefly believe they lead cannot both send; one call
-- claims every shard of a rule's findings (thousands in one tick, on a large fleet). A claim
-- that already holds this try's token is ours: redis-py resent the script after a timeout.
-- Returns {-1} when the caller is not the leader; else, per guard: 1 claimed, 0 muted (sent
-- within the window), -2 refused (a key of another type, written by hand).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {-1}
end
local results = {}
for i = 2, #KEYS do
  local held = redis.pcall('GET', KEYS[i])
  if type(held) == 'table' and held.err then
    results[i - 1] = -2
  elseif held == ARGV[3] then
    results[i - 1] = 1
  elseif held then
    results[i - 1] = 0
  else
    redis.call('SET', KEYS[i], ARGV[3], 'EX', ARGV[2])
    results[i - 1] = 1
  end
end
return results
