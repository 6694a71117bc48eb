-- Apply one shard sample, at most once, in one round trip.
-- KEYS[1] samples:<shard> (LIST)   KEYS[2] seq (HASH)          KEYS[3] latest (HASH)
-- KEYS[4] heartbeats (ZSET)        KEYS[5] rollup:<minute> (HASH)
-- ARGV: shard, seq, sample JSON, ts, history_size, rollup TTL,
--       cpu, memory, latency in hundredths (latency '' when unknown)
-- Returns 0 already applied, 1 applied, 2 applied and the first of its shard here.
-- Atomic so that a write redis-py retries after a timeout (same seq) is ignored as a whole, and a
-- reader never sees a sample in the list that the rollup lacks. Cost is independent of fleet size
-- and kept to 8 commands (benchmarks/ingest.py): reads first, then the writes a retry repeats
-- harmlessly (latest, heartbeat), then the list; a key of the wrong type (written by hand) stops
-- the script at its first touch, before the list, the rollup or the sequence number change, so
-- the sample stays pending in the monitor and is applied once the key is fixed.
local function refused(reply, i)
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, '^WRONGTYPE') then
      return reply  -- READONLY, OOM...: Redis' own words, for the client to recognize
    end
    local kinds = {'list', 'hash', 'hash', 'zset', 'hash'}
    local found = redis.call('TYPE', KEYS[i])['ok']
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. found .. ', not a ' .. kinds[i])
  end
end

local shard, seq = ARGV[1], tonumber(ARGV[2])
local last = redis.pcall('HGET', KEYS[2], shard)
local err = refused(last, 2)
if err then return err end
last = tonumber(last)
if last and seq <= last then
  return 0
end
local rollup = redis.pcall('HMGET', KEYS[5], 'n', 'cpu_sum', 'cpu_min', 'cpu_max',
                           'mem_sum', 'mem_min', 'mem_max', 'lat_n', 'lat_sum', 'lat_min', 'lat_max')
err = refused(rollup, 5)
if err then return err end

err = refused(redis.pcall('HSET', KEYS[3], shard, ARGV[3]), 3)
  or refused(redis.pcall('ZADD', KEYS[4], ARGV[4], shard), 4)
if err then return err end
local length = redis.pcall('LPUSH', KEYS[1], ARGV[3])
err = refused(length, 1)
if err then return err end
local size = tonumber(ARGV[5])
if length > size then
  redis.call('LTRIM', KEYS[1], 0, size - 1)
end

-- Minute rollup: integer sums in hundredths (no float drift), mins and maxes, in one HSET.
-- A field that is not an integer (written by hand) starts over rather than failing the sample.
-- Straight-line on purpose: loops and string building here cost more than the HSET itself.
local function int(value)
  local number = tonumber(value)
  if number and number == math.floor(number) and math.abs(number) < 1e15 then
    return number
  end
end
local n = int(rollup[1]) or 0
local cpu, mem, lat = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local cpu_min, cpu_max = int(rollup[3]), int(rollup[4])
local mem_min, mem_max = int(rollup[6]), int(rollup[7])
if not cpu_min or cpu < cpu_min then cpu_min = cpu end
if not cpu_max or cpu > cpu_max then cpu_max = cpu end
if not mem_min or mem < mem_min then mem_min = mem end
if not mem_max or mem > mem_max then mem_max = mem end
if lat then
  local lat_min, lat_max = int(rollup[10]), int(rollup[11])
  if not lat_min or lat < lat_min then lat_min = lat end
  if not lat_max or lat > lat_max then lat_max = lat end
  redis.call('HSET', KEYS[5], 'n', n + 1,
             'cpu_sum', (int(rollup[2]) or 0) + cpu, 'cpu_min', cpu_min, 'cpu_max', cpu_max,
             'mem_sum', (int(rollup[5]) or 0) + mem, 'mem_min', mem_min, 'mem_max', mem_max,
             'lat_n', (int(rollup[8]) or 0) + 1, 'lat_sum', (int(rollup[9]) or 0) + lat,
             'lat_min', lat_min, 'lat_max', lat_max)
else
  redis.call('HSET', KEYS[5], 'n', n + 1,
             'cpu_sum', (int(rollup[2]) or 0) + cpu, 'cpu_min', cpu_min, 'cpu_max', cpu_max,
             'mem_sum', (int(rollup[5]) or 0) + mem, 'mem_min', mem_min, 'mem_max', mem_max)
end
if n == 0 then
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[6]))
end
redis.call('HSET', KEYS[2], shard, ARGV[2])
if not last then
  return 2  -- the shard's first sample in this Redis: if its process wrote before, Redis lost it
end
return 1
