-- Notice running jobs that a client deleted or cancelled, and take them out of the started state
-- at once instead of when they end (the job keeps running, as it does under a Python worker).
--
-- Why: in the compat layout the started-registry member is the plain job id. rq 2.x/3.0's
-- Job.delete() and Job.cancel() remove only `job_id:execution_id` members, so without this the
-- queue's started count stays one too high until the job ends; rq 1.16 removes the plain id
-- itself. For a deleted job it also does the execution bookkeeping a 1.16 client does not know
-- (execution hash, rq:executions:<id>, the worker's executions set) and drops the worker hash's
-- `current_job`, which clients would fail to fetch. Every step is idempotent and targets only
-- this execution, so it is harmless after the job has ended or the slot started another one.
--
-- ARGV: prefix, then 5 values per running job: worker, job_id, execution_id, member, origin.
-- Returns the job ids whose started state was taken away by this call.
local p = ARGV[1]
local out = {}
for i = 2, #ARGV - 4, 5 do
  local w, id, eid, member, origin = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local jk = p .. ':job:' .. id
  local status = redis.call('HGET', jk, 'status')
  local gone = redis.call('EXISTS', jk) == 0
  if gone or status == 'canceled' then
    local changed = 0
    if member ~= '' then changed = changed + redis.call('ZREM', p .. ':wip:' .. origin, member) end
    if gone then
      local wk = p .. ':worker:' .. w
      if eid ~= '' then
        changed = changed + redis.call('DEL', p .. ':execution:' .. id .. ':' .. eid)
        redis.call('ZREM', p .. ':executions:' .. id, eid)
        if redis.call('ZCARD', p .. ':executions:' .. id) == 0 then
          redis.call('DEL', p .. ':executions:' .. id)
        end
        changed = changed + redis.call('SREM', wk .. ':executions', id .. ':' .. eid)
      end
      if redis.call('HGET', wk, 'current_job') == id then
        changed = changed + redis.call('HDEL', wk, 'current_job')
      end
    end
    if changed > 0 then out[#out + 1] = id end
  end
end
return out
