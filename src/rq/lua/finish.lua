-- Record the outcome of one execution, atomically (rq-wire.md §9.5-§9.9, §12 items 6-7).
-- Replaces RQ's WATCH/MULTI on the dependents set: a script runs alone, so enqueuers that WATCH
-- the parent see either the job before or after it finished, never in between.
-- ARGV is name/value pairs:
--   prefix, job_id, origin, worker ('' for abandoned-job cleanup), execution_id (may be ''),
--   member (started-registry member, may be ''), outcome ('finished' | 'failed' | 'stopped'),
--   allow_retry ('1'|'0'), iso, now, now_f, started_f, ended_f ('' = none), return_value (base64, '' = None),
--   exc_string (base64 zlib), default_result_ttl, working_time, worker_ttl, counter
--   and optionally next_queues, next_execution_id, next_interval, next_compat (start the next job),
--   or replay = '1' with lost_next_execution_id (a retry after the connection died during an earlier
--   call for the same outcome, whose reply was lost: it may have run).
-- Returns {'finished'} | {'failed'} | {'stopped'} | {'retried'} | {'scheduled', seconds} | {'gone'}
--   | {'replayed'} (the earlier call had run: nothing recorded twice).
-- Preceded by fields_fn.lua, start_fn.lua, unstart_fn.lua and enqueue_fn.lua (see scripts.rs).
local a = {}
for i = 1, #ARGV, 2 do a[ARGV[i]] = ARGV[i + 1] end
local p, id, origin, w, eid = a.prefix, a.job_id, a.origin, a.worker, a.execution_id
local jk = p .. ':job:' .. id
local depk = jk .. ':dependents'
local depsk = p .. ':job::' .. id .. ':dependencies'
local rk = p .. ':results:' .. id
local now = tonumber(a.now)
local iso = a.iso

local function finish_job()
  -- Execution and worker bookkeeping happen whatever became of the job.
  if a.member ~= '' then redis.call('ZREM', p .. ':wip:' .. origin, a.member) end
  if eid ~= '' then
    redis.call('DEL', p .. ':execution:' .. id .. ':' .. eid)
    redis.call('ZREM', p .. ':executions:' .. id, eid)
  end
  if w ~= '' then
    local wk = p .. ':worker:' .. w
    if eid ~= '' then redis.call('SREM', wk .. ':executions', id .. ':' .. eid) end
    if redis.call('EXISTS', wk) == 1 then
      redis.call('HDEL', wk, 'current_job')
      redis.call('HSET', wk, 'current_job_working_time', '0', 'state', 'idle', 'last_heartbeat', iso)
      redis.call('HINCRBY', wk, a.counter, 1)
      redis.call('HINCRBYFLOAT', wk, 'total_working_time', a.working_time)
      redis.call('EXPIRE', wk, a.worker_ttl)
    end
  end

  if redis.call('EXISTS', jk) == 0 then
    return {'gone'} -- deleted while it ran (job.delete(), cancel): nothing to record
  end

  local f = redis.call('HMGET', jk, 'result_ttl', 'failure_ttl', 'retries_left', 'retry_intervals',
    'enqueue_at_front_on_retry', 'group_id', 'rate_limit_key', 'rate_limit_concurrency')
  -- Odd values (see fields_fn.lua) read as missing; TTLs are capped at ten years.
  local result_ttl = ttl_cap(field_int(f[1]) or tonumber(a.default_result_ttl))
  local explicit_failure_ttl = field_int(f[2])
  if explicit_failure_ttl then explicit_failure_ttl = ttl_cap(explicit_failure_ttl) end
  local failure_ttl = explicit_failure_ttl or 31536000
  local retries_left = field_int(f[3]) or 0

  local function xadd(kind, with_end)
    local args = {'XADD', rk, 'MAXLEN', '~', '10', '*', 'type', kind, 'worker_name', w}
    if a.return_value ~= '' and kind == '1' then
      args[#args + 1] = 'return_value'; args[#args + 1] = a.return_value
    end
    if a.exc_string ~= '' and kind == '2' then
      args[#args + 1] = 'exc_string'; args[#args + 1] = a.exc_string
    end
    if eid ~= '' then
      args[#args + 1] = 'execution_id'; args[#args + 1] = eid
    end
    if a.started_f ~= '' then
      args[#args + 1] = 'execution_started_at'; args[#args + 1] = a.started_f
    end
    if with_end and a.ended_f ~= '' then
      args[#args + 1] = 'execution_ended_at'; args[#args + 1] = a.ended_f
    end
    redis.call(unpack(args))
  end

  -- RQ's Job.cleanup(ttl): >0 expire, 0 delete, <0 keep.
  local function cleanup(ttl)
    if ttl > 0 then
      redis.call('EXPIRE', jk, ttl); redis.call('EXPIRE', depk, ttl); redis.call('EXPIRE', depsk, ttl)
    elseif ttl == 0 then
      redis.call('DEL', jk, depk, depsk, p .. ':executions:' .. id, rk)
      if f[6] and f[6] ~= '' then redis.call('SREM', p .. ':group:' .. f[6], id) end
    end
  end

  -- Move dependents whose dependencies are now all met from deferred to their queue.
  local function enqueue_dependents(parent_failed)
    local deps = redis.call('SMEMBERS', depk)
    for _, d in ipairs(deps) do
      local dk = p .. ':job:' .. d
      local h = redis.call('HMGET', dk, 'status', 'origin', 'enqueue_at_front', 'allow_dependency_failures',
        'rate_limit_key', 'rate_limit_concurrency')
      local st, dorigin, front, allow = h[1], h[2], h[3], h[4]
      local ok = st and dorigin and st ~= 'canceled' and (not parent_failed or allow == '1')
      if ok then
        for _, pid in ipairs(redis.call('SMEMBERS', p .. ':job::' .. d .. ':dependencies')) do
          if pid ~= id then
            local ps = redis.call('HGET', p .. ':job:' .. pid, 'status')
            if not (ps == 'finished' or (allow == '1' and ps == 'failed')) then ok = false; break end
          end
        end
      end
      if ok then
        redis.call('ZREM', p .. ':deferred:' .. dorigin, d)
        -- A dependent under an rq 3.0 concurrency limit waits for a slot, as rq 3.0 enqueues it
        -- from its ready registry.
        enqueue_job(p, d, dorigin, front == '1', h[5], h[6], a.now_f, iso)
        redis.call('SREM', depk, d)
      end
    end
  end

  -- rq 3.0 concurrency limits, driven by the job's own fields: once the job no longer holds its
  -- slot (anything but a re-queue), free the slot and promote the oldest waiting jobs, as rq 3.0's
  -- release-and-enqueue does. Jobs without `rate_limit_key` skip this entirely.
  local function release_rate_limit_slot()
    local rl = f[7]
    if not rl or rl == '' then return end
    redis.call('ZREM', p .. ':rl:' .. rl .. ':allowed', id)
    rl_fill_slots(p, rl, a.now_f, iso, f[8])
  end

  local function record()
    if a.outcome == 'finished' then
      enqueue_dependents(false)
      if result_ttl ~= 0 then
        redis.call('HSET', jk, 'status', 'finished', 'ended_at', iso, 'last_heartbeat', iso)
        xadd('1', true)
        if result_ttl == -1 then redis.call('PERSIST', rk) else redis.call('EXPIRE', rk, result_ttl) end
        local score = now + result_ttl
        if result_ttl == -1 then score = '+inf' elseif result_ttl < 0 then score = result_ttl end
        redis.call('ZADD', p .. ':finished:' .. origin, score, id)
      end
      cleanup(result_ttl)
      return {'finished'}
    end

    if a.outcome == 'failed' and a.allow_retry == '1' and retries_left > 0 then
      local interval = 0
      local raw = redis.call('HGET', jk, 'retry_intervals')
      if raw then
        local ok, list = pcall(cjson.decode, raw)
        if ok and type(list) == 'table' and #list > 0 then
          local idx = math.max(#list - retries_left, 0) + 1
          if idx > #list then idx = #list end
          interval = tonumber(list[idx]) or 0
          if interval ~= interval then interval = 0 end
          interval = ttl_cap(interval)
        end
      end
      redis.call('HSET', jk, 'retries_left', tostring(retries_left - 1), 'ended_at', iso, 'last_heartbeat', iso)
      if interval <= 0 then
        redis.call('HSET', jk, 'status', 'queued', 'enqueued_at', iso)
        if f[5] == '1' then
          redis.call('LPUSH', p .. ':queue:' .. origin, id)
        else
          redis.call('RPUSH', p .. ':queue:' .. origin, id)
        end
        return {'retried'}
      end
      redis.call('HSET', jk, 'status', 'scheduled')
      redis.call('ZADD', p .. ':scheduled:' .. origin, now + math.floor(interval), id)
      redis.call('SADD', p .. ':queues', p .. ':queue:' .. origin)
      return {'scheduled', tostring(interval)}
    end

    local stopped = a.outcome == 'stopped'
    if stopped then
      redis.call('HSET', jk, 'status', 'stopped', 'last_heartbeat', iso)
    else
      redis.call('HSET', jk, 'status', 'failed', 'ended_at', iso, 'last_heartbeat', iso)
    end
    local score = now + failure_ttl
    if failure_ttl < 0 then score = failure_ttl end
    redis.call('ZADD', p .. ':failed:' .. origin, score, id)
    xadd('2', not stopped)
    if explicit_failure_ttl then
      if explicit_failure_ttl == -1 then redis.call('PERSIST', rk) else redis.call('EXPIRE', rk, explicit_failure_ttl) end
    end
    if not stopped then enqueue_dependents(true) end
    cleanup(failure_ttl)
    if stopped then return {'stopped'} end
    return {'failed'}

  end

  local result = record()
  if result[1] ~= 'retried' then release_rate_limit_slot() end
  return result
end

-- Replay: undo the next job the lost call may have started (this worker never ran it), then
-- record the outcome only if the earlier call did not: the job would still be started by us.
if a.replay == '1' then
  unstart_job(p, w, a.lost_next_execution_id or '')
  local h = redis.call('HMGET', jk, 'status', 'worker_name')
  if not (h[1] == 'started' and h[2] == w) then
    if w ~= '' then
      local wk = p .. ':worker:' .. w
      if eid ~= '' then redis.call('SREM', wk .. ':executions', id .. ':' .. eid) end
      if redis.call('EXISTS', wk) == 1 and redis.call('HGET', wk, 'current_job') == id then
        redis.call('HDEL', wk, 'current_job')
        redis.call('HSET', wk, 'state', 'idle')
      end
    end
    return {'replayed'}
  end
end

local result = finish_job()
-- Fused with the next dequeue: the worker passes next_* when it wants another job, saving a
-- round trip per job on busy queues. Returns {result, start_reply} then.
if a.next_queues and a.next_queues ~= '' then
  local b = {
    prefix = p, worker = w, execution_id = a.next_execution_id, iso = iso, now_f = a.now_f,
    now = a.now, interval = a.next_interval, compat = a.next_compat, check_suspended = '1',
    mode = 'pop', queues = a.next_queues,
  }
  return {result, start_job(b)}
end
return result
