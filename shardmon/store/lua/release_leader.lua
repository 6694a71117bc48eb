-- Give up leadership on a clean stop, only if this node holds it (compare-and-delete), so that a
-- planned restart hands over at once instead of after a lease. KEYS[1] leader   ARGV[1] this node
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
