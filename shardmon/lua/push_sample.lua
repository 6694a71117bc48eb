-- Apply one shard sample, at most once, in one round trip.
-- KEYS[1] samples:<shard> (LIST)   KEYS[2] seq (HASH)          KEYS[3] latest (HASH)
-- KEYS[4] heartbeats (ZSET)        KEYS[5] rollup:<minute> (HASH)
-- ARGV: shard, seq, sample JSON, ts, history_size, rollup TTL,
--       cpu, memory, latency in hundredths (latency '' when unknown)
-- Atomic so that a write redis-py retries after a timeout (same seq) is ignored as a whole, and a
-- reader never sees a sample in the list that the rollup lacks. Cost is independent of fleet size.
-- A key of the wrong type (written by hand) fails the whole write before anything changes,
-- so the sample stays pending in the monitor instead of half-applied.
local expected = {'list', 'hash', 'hash', 'zset', 'hash'}
for i = 1, 5 do
  local found = redis.call('TYPE', KEYS[i])['ok']
  if found ~= 'none' and found ~= expected[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. found .. ', not a ' .. expected[i])
  end
end

local shard = ARGV[1]
local seq = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[2], shard))
if last and seq <= last then
  return 0
end
redis.call('HSET', KEYS[2], shard, ARGV[2])
redis.call('LPUSH', KEYS[1], ARGV[3])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[5]) - 1)
redis.call('HSET', KEYS[3], shard, ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], shard)

-- Minute rollup: integer sums (HINCRBY, no float drift), mins and maxes.
local rollup = KEYS[5]
if redis.call('HINCRBY', rollup, 'n', 1) == 1 then
  redis.call('EXPIRE', rollup, tonumber(ARGV[6]))
end
local names = {'cpu', 'mem', 'lat'}
local values = {tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])}
local bounds = redis.call('HMGET', rollup, 'cpu_min', 'cpu_max', 'mem_min', 'mem_max',
                          'lat_min', 'lat_max')
local updates = {}
for i = 1, 3 do
  local value = values[i]
  if value then
    local name = names[i]
    redis.call('HINCRBY', rollup, name .. '_sum', value)
    if i == 3 then
      redis.call('HINCRBY', rollup, 'lat_n', 1)
    end
    local low, high = tonumber(bounds[2 * i - 1]), tonumber(bounds[2 * i])
    if not low or value < low then
      table.insert(updates, name .. '_min'); table.insert(updates, value)
    end
    if not high or value > high then
      table.insert(updates, name .. '_max'); table.insert(updates, value)
    end
  end
end
if #updates > 0 then
  redis.call('HSET', rollup, (table.unpack or unpack)(updates))
end
return 1
