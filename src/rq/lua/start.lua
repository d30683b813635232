-- Dequeue a job (or take one BLMOVE already moved) and mark it started, in one atomic step.
-- RQ does not run on Redis Cluster (transactions span queues), so keys are built from the prefix.
-- Preceded by start_fn.lua (see scripts.rs). ARGV is name/value pairs, as start_job() documents.
local a = {}
for i = 1, #ARGV, 2 do a[ARGV[i]] = ARGV[i + 1] end
return start_job(a)
