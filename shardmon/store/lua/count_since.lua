-- ZCOUNTs of many sorted sets since a score each, in one round trip: the leader's restart storm
-- and identify storm counts without one ZCOUNT command per shard on the wire (5,000 shards:
-- 10,000 ZCOUNTs here, a few ms of server time, instead of 10,000 replies for the client).
-- KEYS: groups of ZSETs (restarts:<shard>, gateway:<shard>:identify)
-- ARGV: for each group in order, how many keys it has and the score to count from
-- Returns a flat list: the 1-based index into KEYS and the count, for counts above zero only;
-- a key of the wrong type (written by hand) gives count -1, for the reader to skip and count.
local found = {}
local first = 1
for g = 1, #ARGV, 2 do
  local last = first + tonumber(ARGV[g]) - 1
  for i = first, last do
    local count = redis.pcall('ZCOUNT', KEYS[i], ARGV[g + 1], '+inf')
    if type(count) == 'table' then
      count = -1
    end
    if count ~= 0 then
      found[#found + 1] = i
      found[#found + 1] = count
    end
  end
  first = last + 1
end
return found
