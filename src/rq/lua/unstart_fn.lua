-- Shared by finish.lua (replay mode) and unstart.lua.
-- unstart_job(p, w, eid): undo a start whose reply was lost with the connection. The worker never
-- saw the job, so it never ran it: the execution is removed and the job goes back to the front of
-- its queue with the fields an enqueue writes ('' for started_at, worker_name, last_heartbeat).
-- A job that is no longer started by this worker (e.g. cleaned up meanwhile) is left alone.
-- Returns the job id put back, or false.
local function unstart_job(p, w, eid)
  if w == '' or eid == '' then return false end
  local wk = p .. ':worker:' .. w
  local suffix = ':' .. eid
  for _, m in ipairs(redis.call('SMEMBERS', wk .. ':executions')) do
    if #m > #suffix and string.sub(m, -#suffix) == suffix then
      local jid = string.sub(m, 1, #m - #suffix)
      local jk = p .. ':job:' .. jid
      redis.call('SREM', wk .. ':executions', m)
      redis.call('DEL', p .. ':execution:' .. jid .. ':' .. eid)
      redis.call('ZREM', p .. ':executions:' .. jid, eid)
      local h = redis.call('HMGET', jk, 'status', 'worker_name', 'origin')
      if h[1] == 'started' and h[2] == w and h[3] and h[3] ~= '' then
        redis.call('ZREM', p .. ':wip:' .. h[3], jid, m)
        redis.call('HSET', jk, 'status', 'queued', 'started_at', '', 'worker_name', '', 'last_heartbeat', '')
        redis.call('LPUSH', p .. ':queue:' .. h[3], jid)
        if redis.call('HGET', wk, 'current_job') == jid then
          redis.call('HDEL', wk, 'current_job')
          redis.call('HSET', wk, 'state', 'idle')
        end
        return jid
      end
      return false
    end
  end
  return false
end
