-- Shared by start.lua and finish.lua (which can start the next job in the same call); needs
-- fields_fn.lua before it.
-- start_job(a): dequeue a job (or take one BLMOVE already moved) and mark it started.
-- `a` holds: prefix, worker, execution_id, iso, now_f, now, interval, compat, check_suspended,
--   mode ('pop' | 'moved'), queues (comma-joined, priority order) | queue + job_id.
-- Returns {'started', queue, job_id, member, ttl, {hash fields...}} | {'empty'} | {'suspended'}.
local function start_job(a)
  local p = a.prefix
  local now = tonumber(a.now)
  local interval = tonumber(a.interval)

  if a.check_suspended == '1' and redis.call('EXISTS', p .. ':suspended') == 1 then
    return {'suspended'}
  end
  local function start(q, id)
    local jk = p .. ':job:' .. id
    local inter = p .. ':queue:' .. q .. ':intermediate'
    if redis.call('LREM', inter, 1, id) == 0 and a.mode == 'moved' then
      -- BLMOVE moved it, but maintenance has since put it back in its queue (the move looked
      -- lost): it runs from there, once. Starting it here too would run it twice.
      return nil
    end
    local flat = redis.call('HGETALL', jk)
    if #flat == 0 then
      return nil -- dangling id: the job hash is gone; drop it
    end
    local origin, timeout = q, 180
    for i = 1, #flat, 2 do
      if flat[i] == 'origin' and flat[i + 1] ~= '' then origin = flat[i + 1] end
      if flat[i] == 'timeout' then
        -- As the worker reads it (job.rs): missing or 0 is 180; '1h' and other odd values are
        -- read there, here the default only sizes the first heartbeat's TTL.
        timeout = field_int(flat[i + 1]) or 180
        if timeout == 0 then timeout = 180 end
      end
    end
    local ttl
    if timeout <= 0 then ttl = interval + 60 else ttl = math.floor(math.min(timeout, interval)) + 60 end
    local eid = a.execution_id
    local member = id
    if a.compat ~= '1' then member = id .. ':' .. eid end
    local ek = p .. ':execution:' .. id .. ':' .. eid
    redis.call('HSET', ek, 'id', eid, 'job_id', id, 'created_at', a.now_f, 'last_heartbeat', a.now_f,
      'worker_name', a.worker)
    redis.call('EXPIRE', ek, ttl)
    redis.call('ZADD', p .. ':executions:' .. id, now + ttl + 60, eid)
    redis.call('EXPIRE', p .. ':executions:' .. id, ttl + 60)
    redis.call('ZADD', p .. ':wip:' .. origin, now + ttl, member)
    local wk = p .. ':worker:' .. a.worker
    redis.call('SADD', wk .. ':executions', id .. ':' .. eid)
    redis.call('EXPIRE', wk .. ':executions', ttl + 60)
    redis.call('HSET', wk, 'state', 'busy', 'current_job', id, 'current_job_working_time', '0',
      'last_heartbeat', a.iso)
    redis.call('EXPIRE', wk, ttl)
    redis.call('HSET', jk, 'status', 'started', 'started_at', a.iso, 'last_heartbeat', a.iso,
      'worker_name', a.worker)
    redis.call('PERSIST', jk)
    return {'started', q, id, member, tostring(ttl), redis.call('HGETALL', jk)}
  end

  if a.mode == 'moved' then
    local r = start(a.queue, a.job_id)
    if r then return r end
    return {'empty'}
  end

  for q in string.gmatch(a.queues, '[^,]+') do
    local src = p .. ':queue:' .. q
    local inter = src .. ':intermediate'
    for _ = 1, 1000 do
      local id = redis.call('LMOVE', src, inter, 'LEFT', 'RIGHT')
      if not id then break end
      local r = start(q, id)
      if r then return r end
    end
  end
  return {'empty'}
end
