-- Count the members of an index (recent_restarts, identifies: "<shard>:...") by shard, inside
-- Redis, so that the leader gets back only the shards it may alert on, not one entry for every
-- shard of a fleet that just restarted (20,000 at once, on a big bot).
-- KEYS[1] the index (ZSET)
-- ARGV[1] count members from this score   ARGV[2] return the shards with at least this many
-- ARGV[3] also count the members from this score, in all   ARGV[4..n] shards to return anyway
-- (those with a condition announced: their "resolved" message says their count)
-- Returns {members naming no shard, members since ARGV[3], shard, count, shard, count, ...}.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES')
local counts, bad, recent = {}, 0, 0
local recent_since = tonumber(ARGV[3])
for i = 1, #members, 2 do
  local shard = string.match(members[i], '^(%d+):')
  if shard then
    counts[shard] = (counts[shard] or 0) + 1
    if tonumber(members[i + 1]) >= recent_since then
      recent = recent + 1
    end
  else
    bad = bad + 1
  end
end
local wanted = {}
for i = 4, #ARGV do
  wanted[ARGV[i]] = true
end
local floor = tonumber(ARGV[2])
local found = {bad, recent}
for shard, count in pairs(counts) do
  if count >= floor or wanted[shard] then
    found[#found + 1] = tonumber(shard)
    found[#found + 1] = count
  end
end
return found
