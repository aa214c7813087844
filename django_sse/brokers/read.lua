-- django-sse: read a channel's history after a position, with what is needed to detect gaps.
-- KEYS[1]  the channel's history stream
-- ARGV[1]  the position after which to read, "" for only the tip;  ARGV[2]  COUNT
-- Returns {0} when the stream does not exist, else
-- {1, last-generated-id, max-deleted-entry-id, position-exists (0/1), entries}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last, max_deleted = '0-0', '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then
    last = info[i + 1]
  elseif info[i] == 'max-deleted-entry-id' then
    max_deleted = info[i + 1]
  end
end
if ARGV[1] == '' then
  return {1, last, max_deleted, 0, {}}
end
local exists = #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
return {1, last, max_deleted, exists, entries}
