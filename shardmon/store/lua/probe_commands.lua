-- `shardmon doctor`'s permission probe: run each command shardmon sends, on one scratch key, and
-- return those the ACL user may not run, or that the server does not know (renamed or disabled,
-- as managed services do). Any other error (a wrong type: the commands all meet one string key)
-- means the command was allowed. The key lives 60 s and is deleted at the end.
-- KEYS[1] doctor (STRING)
-- ARGV: per command its name, its argument count, then its arguments; '<key>' is KEYS[1].
local denied = {}
local i = 1
while i <= #ARGV do
  local command, count = ARGV[i], tonumber(ARGV[i + 1])
  local args = {}
  for j = 1, count do
    local arg = ARGV[i + 1 + j]
    args[j] = (arg == '<key>') and KEYS[1] or arg
  end
  local reply = redis.pcall(command, unpack(args))
  if type(reply) == 'table' and reply.err then
    local err = reply.err
    if string.find(err, 'NOPERM', 1, true) or string.find(err, "can't run this command", 1, true)
        or string.find(err, "can't access at least one of the keys", 1, true)
        or string.find(string.lower(err), 'unknown', 1, true) then
      denied[#denied + 1] = command
    end
  end
  i = i + 2 + count
end
redis.pcall('DEL', KEYS[1])
return denied
