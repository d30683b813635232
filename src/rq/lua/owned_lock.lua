-- Acquire or refresh locks held by one owner (the scheduler locks, with rq 2.11+ semantics, and
-- the registry-cleaning lock): take a lock when free, refresh it when ours.
-- ARGV: owner, ttl, then lock keys. Returns the list of locks held after the call.
local owner, ttl = ARGV[1], tonumber(ARGV[2])
local held = {}
for i = 3, #ARGV do
  local k = ARGV[i]
  local cur = redis.call('GET', k)
  if not cur then
    redis.call('SET', k, owner, 'EX', ttl)
    held[#held + 1] = k
  elseif cur == owner then
    redis.call('EXPIRE', k, ttl)
    held[#held + 1] = k
  end
end
return held
