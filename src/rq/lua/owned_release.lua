-- Release locks only if we still own them. ARGV: owner, then lock keys.
for i = 2, #ARGV do
  if redis.call('GET', ARGV[i]) == ARGV[1] then redis.call('DEL', ARGV[i]) end
end
return 1
