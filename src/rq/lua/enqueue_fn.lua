-- Enqueueing from inside scripts (finish.lua, ready_recover.lua, rate_limit_clean.lua).

-- rq 3.0 concurrency limits: fill free slots of limit `key` with its oldest waiting jobs, as rq
-- 3.0's acquire-and-enqueue does (stale waiting entries -- no hash, no origin, not
-- `rate_limited` -- are dropped). Each promoted job joins the allowed set, goes onto its queue
-- (front if `enqueue_at_front` is '1') and becomes `queued`. The limit is the config hash's
-- `concurrency`, else `fallback` (the finishing job's own `rate_limit_concurrency`), else 0.
-- Returns how many were promoted.
local function rl_fill_slots(p, key, now_f, iso, fallback)
  local allowed = p .. ':rl:' .. key .. ':allowed'
  local waiting = p .. ':rl:' .. key .. ':rate_limited'
  local concurrency = tonumber(redis.call('HGET', p .. ':rl:' .. key, 'concurrency'))
    or tonumber(fallback) or 0
  local promoted = 0
  while redis.call('ZCARD', allowed) < concurrency do
    local popped = redis.call('ZPOPMIN', waiting)
    if #popped == 0 then break end
    local wid = popped[1]
    local wk = p .. ':job:' .. wid
    local h = redis.call('HMGET', wk, 'origin', 'status', 'enqueue_at_front')
    if h[1] and h[2] == 'rate_limited' then
      redis.call('ZADD', allowed, now_f, wid)
      if h[3] == '1' then
        redis.call('LPUSH', p .. ':queue:' .. h[1], wid)
      else
        redis.call('RPUSH', p .. ':queue:' .. h[1], wid)
      end
      redis.call('HSET', wk, 'status', 'queued', 'enqueued_at', iso)
      promoted = promoted + 1
    end
  end
  return promoted
end

-- Put job `id` (origin queue `origin`) on its way, as rq enqueues a job whose turn has come: under
-- an rq 3.0 concurrency limit (`rl` with a positive `rl_conc`) the limit is registered, the job
-- becomes `rate_limited` and waits for a slot (promoted at once if one is free); otherwise it
-- becomes `queued` at the back of its queue, or the front when `front`.
local function enqueue_job(p, id, origin, front, rl, rl_conc, now_f, iso)
  local jk = p .. ':job:' .. id
  if rl and rl ~= '' and tonumber(rl_conc) and tonumber(rl_conc) > 0 then
    redis.call('SADD', p .. ':rl-keys', rl)
    redis.call('HSET', p .. ':rl:' .. rl, 'concurrency', rl_conc)
    redis.call('HSET', jk, 'status', 'rate_limited')
    redis.call('ZADD', p .. ':rl:' .. rl .. ':rate_limited', now_f, id)
    rl_fill_slots(p, rl, now_f, iso, rl_conc)
  else
    redis.call('HSET', jk, 'status', 'queued', 'enqueued_at', iso)
    if front then
      redis.call('LPUSH', p .. ':queue:' .. origin, id)
    else
      redis.call('RPUSH', p .. ':queue:' .. origin, id)
    end
  end
end
