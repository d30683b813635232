-- Maintenance of one rq 3.0 concurrency limit (rq 3.0's RateLimitRegistry.cleanup, as one
-- script): free slots leaked by jobs that no longer hold them -- missing, or in any status but
-- queued/started, and with no live execution (a job canceled or deleted while it runs keeps its
-- slot) -- then fill free slots with waiting jobs, and forget the limit once nothing is allowed
-- or waiting. Frees what a crashed worker, or a worker that predates limits (rq 2.x), left.
-- ARGV is name/value pairs: prefix, key, now_f, iso. Returns {released, promoted, forgotten (0|1)}.
-- Preceded by enqueue_fn.lua (see scripts.rs).
local a = {}
for i = 1, #ARGV, 2 do a[ARGV[i]] = ARGV[i + 1] end
local p, key, now_f, iso = a.prefix, a.key, a.now_f, a.iso
local cfg = p .. ':rl:' .. key
local allowed = cfg .. ':allowed'
local waiting = cfg .. ':rate_limited'
local released = 0
for _, id in ipairs(redis.call('ZRANGE', allowed, 0, -1)) do
  local st = redis.call('HGET', p .. ':job:' .. id, 'status')
  if st ~= 'queued' and st ~= 'started'
      and redis.call('ZCOUNT', p .. ':executions:' .. id, '(' .. now_f, '+inf') == 0 then
    redis.call('ZREM', allowed, id)
    released = released + 1
  end
end
local promoted = rl_fill_slots(p, key, now_f, iso)
local forgotten = 0
if promoted == 0 and redis.call('ZCARD', allowed) == 0 and redis.call('ZCARD', waiting) == 0 then
  redis.call('SREM', p .. ':rl-keys', key)
  redis.call('DEL', allowed, waiting, cfg)
  forgotten = 1
end
return {released, promoted, forgotten}
