-- Record an alert sent (or not) in the capped `alerts` list and, when delivered, count it.
-- KEYS[1] alerts (LIST)   KEYS[2] alert_counts (HASH)
-- ARGV[1] the record JSON   ARGV[2] the cap   ARGV[3] the counter field, '' when undelivered
-- redis-py resends a script whose reply was lost; a record already in the list (byte for byte:
-- it carries the alert's id) is that resend, and counted once. Returns 1 recorded, 0 already.
if redis.call('LPOS', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
if ARGV[3] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
return 1
