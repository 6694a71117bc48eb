-- Take the requests made to a supervisor for its shards: read and delete each in one step, so
-- that two supervisors of one shard (a restart overlapping the old one's stop) act once.
-- KEYS[1] run_requests (HASH)   ARGV the shard ids
-- Returns the requests found, in the order of ARGV (false where there was none).
local taken = {}
for i, shard in ipairs(ARGV) do
  local request = redis.call('HGET', KEYS[1], shard)
  if request then
    redis.call('HDEL', KEYS[1], shard)
  end
  taken[i] = request
end
return taken
