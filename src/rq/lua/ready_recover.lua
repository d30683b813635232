-- Recover what an rq 3.0 worker left in a queue's ready registry (rq 3.0's
-- ReadyJobRegistry.cleanup, atomically): rq 3.0 moves a finished job's dependents deferred ->
-- `ready_to_enqueue` (zset `ready:<queue>`) and enqueues them in a second transaction; a worker
-- that died in between leaves them there. Entries whose job is gone or no longer
-- `ready_to_enqueue` are dropped; the others are enqueued as rq 3.0 would (front when
-- `should_enqueue_at_front`, through their concurrency limit when they have one).
-- ARGV is name/value pairs: prefix, queue, now_f, iso. Returns how many jobs were enqueued.
-- Preceded by enqueue_fn.lua (see scripts.rs).
local a = {}
for i = 1, #ARGV, 2 do a[ARGV[i]] = ARGV[i + 1] end
local p, queue = a.prefix, a.queue
local ready = p .. ':ready:' .. queue
local enqueued = 0
for _, id in ipairs(redis.call('ZRANGE', ready, 0, -1)) do
  redis.call('ZREM', ready, id)
  local h = redis.call('HMGET', p .. ':job:' .. id, 'status', 'origin', 'enqueue_at_front',
    'enqueue_at_front_on_retry', 'ended_at', 'rate_limit_key', 'rate_limit_concurrency')
  if h[1] == 'ready_to_enqueue' then
    local front = (h[4] == '1' and h[5] and h[5] ~= '') or h[3] == '1'
    enqueue_job(p, id, h[2] or queue, front, h[6], h[7], a.now_f, a.iso)
    enqueued = enqueued + 1
  end
end
return enqueued
