-- Numbers read from a job hash, which anything can write (an enqueuer of any RQ version, a
-- person with redis-cli): every one goes through these before it reaches arithmetic or a command,
-- so an odd value takes its default instead of failing the script half-way.
-- field_int(v): an integer of safe size, or nil (missing, not a number, NaN, infinite, fractional).
-- ttl_cap(n): a TTL as EXPIRE and ZADD take it, at most ten years.
local function field_int(v)
  local n = tonumber(v)
  if n == nil or n ~= n or n ~= math.floor(n) or n > 4503599627370496 or n < -4503599627370496 then
    return nil
  end
  return n
end
local function ttl_cap(n)
  if n > 315360000 then return 315360000 end
  return n
end
