-- Put back in its queue a job that sits in the intermediate list without having been started: a
-- worker moved it there (LMOVE/BLMOVE) and then lost the reply with its connection, or died before
-- starting it. RQ fails such jobs ("stuck in intermediate queue"); a job that never ran is put
-- back at the front of its queue instead, atomically, so that it runs exactly once: rq-worker's
-- start of a moved job checks that it could still take the id out of the intermediate list.
-- Only a job whose status is still `queued` is put back; any other status means a worker got
-- further than the move, and the caller fails it as RQ does.
-- ARGV: prefix, queue, job id. Returns 'requeued', 'fail', 'dangling' (job hash gone, id
-- dropped) or 'gone' (no longer in the intermediate list).
local p, q, id = ARGV[1], ARGV[2], ARGV[3]
local inter = p .. ':queue:' .. q .. ':intermediate'
local status = redis.call('HGET', p .. ':job:' .. id, 'status')
if not status then
  redis.call('LREM', inter, 1, id)
  return 'dangling'
end
if status ~= 'queued' then
  return 'fail'
end
if redis.call('LREM', inter, 1, id) == 0 then
  return 'gone'
end
redis.call('LPUSH', p .. ':queue:' .. q, id)
redis.call('SADD', p .. ':queues', p .. ':queue:' .. q)
return 'requeued'
