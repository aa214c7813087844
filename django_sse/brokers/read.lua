-- django-sse: read a channel's history after a position, with what is needed to detect gaps.
-- KEYS[1]  the channel's history stream
-- ARGV[1]  the position after which to read, "" for only the tip;  ARGV[2]  COUNT
-- Returns {0} when the stream does not exist, else
-- {1, last-generated-id, first-entry-id ("" when empty), entries-added, length,
--  position-exists (0/1), entries}.
-- (Redis 7.0 does not move max-deleted-entry-id when MAXLEN/MINID trims, so gaps
-- are found from the first entry and the count of entries ever added.)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last, first, added, length = '0-0', '', 0, 0
for i = 1, #info, 2 do
  local name = info[i]
  if name == 'last-generated-id' then
    last = info[i + 1]
  elseif name == 'entries-added' then
    added = info[i + 1]
  elseif name == 'length' then
    length = info[i + 1]
  elseif name == 'first-entry' and info[i + 1] then
    first = info[i + 1][1]
  end
end
if ARGV[1] == '' then
  return {1, last, first, added, length, 0, {}}
end
local exists = #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
return {1, last, first, added, length, exists, entries}
