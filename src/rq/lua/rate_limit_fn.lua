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
