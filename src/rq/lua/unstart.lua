-- Undo a start whose reply was lost (see unstart_fn.lua). Preceded by unstart_fn.lua.
-- ARGV: prefix, worker, execution_id. Returns the job id put back, or false (nil reply).
return unstart_job(ARGV[1], ARGV[2], ARGV[3])
