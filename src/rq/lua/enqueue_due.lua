-- Move due jobs from rq:scheduled:<q> to rq:queue:<q> (rq-wire.md §8.5, step 4).
-- ARGV pairs: prefix, queue, now, iso. Returns the number of jobs enqueued.
local a = {}
for i = 1, #ARGV, 2 do a[ARGV[i]] = ARGV[i + 1] end
local p, q = a.prefix, a.queue
local sk = p .. ':scheduled:' .. q
local ids = redis.call('ZRANGEBYSCORE', sk, 0, a.now, 'LIMIT', 0, 1000)
local n = 0
for _, id in ipairs(ids) do
  local jk = p .. ':job:' .. id
  redis.call('ZREM', sk, id)
  if redis.call('EXISTS', jk) == 1 then
    local h = redis.call('HMGET', jk, 'origin', 'enqueue_at_front', 'enqueue_at_front_on_retry')
    local origin = h[1]
    if not origin or origin == '' then origin = q end
    redis.call('HSET', jk, 'status', 'queued', 'enqueued_at', a.iso)
    if h[2] == '1' or h[3] == '1' then
      redis.call('LPUSH', p .. ':queue:' .. origin, id)
    else
      redis.call('RPUSH', p .. ':queue:' .. origin, id)
    end
    n = n + 1
  end
end
return n
