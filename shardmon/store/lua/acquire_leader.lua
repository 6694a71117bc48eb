-- Become leader if nobody is, and take a new fencing epoch.
-- KEYS[1] leader (STRING)   KEYS[2] leader:epoch (STRING)
-- ARGV[1] this node   ARGV[2] lease in ms
-- One script so that no other node can see a leader without a fresh epoch, and the epoch only
-- moves when leadership changes hands. Returns the epoch held, or nil when another node leads.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
if holder then
  return nil
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
