-- Reset the lease, only if this node still holds it (compare-and-PEXPIRE).
-- KEYS[1] leader   ARGV[1] this node   ARGV[2] lease in ms
-- PEXPIRE sets the TTL to a full lease (never adds to what is left). Returns 1 if renewed.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
