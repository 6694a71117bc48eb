-- IDENTIFYs of many shards since a time, in one round trip: the leader's view of identify
-- storms without one ZCOUNT command per shard on the wire (5,000 shards: 5,000 ZCOUNTs here,
-- a few ms of server time, instead of 5,000 replies for the client to parse).
-- KEYS[i] gateway:<shard>:identify (ZSET)   ARGV[1] since (score)
-- Returns a flat list: the 1-based index into KEYS and the count, for counts above zero only;
-- a key of the wrong type (written by hand) gives count -1, for the reader to skip and count.
local found = {}
for i = 1, #KEYS do
  local count = redis.pcall('ZCOUNT', KEYS[i], ARGV[1], '+inf')
  if type(count) == 'table' then
    count = -1
  end
  if count ~= 0 then
    found[#found + 1] = i
    found[#found + 1] = count
  end
end
return found
