-- Group maintenance for one group (rq 2.x/3.0's Group.cleanup, then its registry check): ids whose
-- job hash is gone (expired or deleted) leave the group's set; a group whose set is then gone
-- leaves the groups registry.
-- ARGV is name/value pairs: prefix, group. Returns {ids_removed, group_removed (0|1)}.
local a = {}
for i = 1, #ARGV, 2 do a[ARGV[i]] = ARGV[i + 1] end
local p, g = a.prefix, a.group
local gk = p .. ':group:' .. g
local removed = 0
for _, id in ipairs(redis.call('SMEMBERS', gk)) do
  if redis.call('EXISTS', p .. ':job:' .. id) == 0 then
    redis.call('SREM', gk, id)
    removed = removed + 1
  end
end
local gone = 0
if redis.call('EXISTS', gk) == 0 then
  redis.call('SREM', p .. ':groups', g)
  gone = 1
end
return {removed, gone}
