-- Heartbeat of a busy worker (rq-wire.md §9.4): worker hash, execution, started-registry score
-- (ZADD XX, so a member cleaned up meanwhile is not resurrected) and the job's last_heartbeat.
-- ARGV pairs: prefix, worker, job_id, execution_id, member, origin, iso, now_f, now, ttl, working_time.
-- Returns 1 when the worker hash had vanished (the caller re-registers it), else 0.
local a = {}
for i = 1, #ARGV, 2 do a[ARGV[i]] = ARGV[i + 1] end
local p, id, eid = a.prefix, a.job_id, a.execution_id
local now, ttl = tonumber(a.now), tonumber(a.ttl)
local wk = p .. ':worker:' .. a.worker
local vanished = redis.call('EXISTS', wk) == 0 and 1 or 0
redis.call('HSET', wk, 'last_heartbeat', a.iso, 'current_job_working_time', a.working_time)
redis.call('EXPIRE', wk, ttl)
local ek = p .. ':execution:' .. id .. ':' .. eid
if redis.call('EXISTS', ek) == 1 then
  redis.call('HSET', ek, 'last_heartbeat', a.now_f)
  redis.call('EXPIRE', ek, ttl)
end
redis.call('ZADD', p .. ':wip:' .. a.origin, 'XX', now + ttl, a.member)
if redis.call('EXISTS', p .. ':executions:' .. id) == 1 then
  redis.call('ZADD', p .. ':executions:' .. id, now + ttl + 60, eid)
  redis.call('EXPIRE', p .. ':executions:' .. id, ttl + 60)
end
redis.call('EXPIRE', wk .. ':executions', ttl + 60)
local jk = p .. ':job:' .. id
if redis.call('EXISTS', jk) == 1 then
  redis.call('HSET', jk, 'last_heartbeat', a.iso)
end
return vanished
