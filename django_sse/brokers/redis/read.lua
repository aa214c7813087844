-- django-sse: read a channel's history after a position, with what is needed to detect gaps.
-- KEYS[1]  the channel's history stream
-- ARGV[1]  the position after which to read, "" for only the tip;  ARGV[2]  COUNT
-- ARGV[3]  the most bytes of field values (event name and data) to return, 0: no bound;
--          at least one entry is returned, so an entry larger than it is still read
-- Returns {0} when the stream does not exist, else
-- {1, last-generated-id, first-entry-id ("" when empty), entries-added, length,
--  position-exists (0/1), entries, cut (1: ARGV[3] stopped the read before COUNT)}.
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
  return {1, last, first, added, length, 0, {}, 0}
end
local exists = #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
local count, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3] or '0')
if max_bytes <= 0 then
  local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', count)
  return {1, last, first, added, length, exists, entries, 0}
end
-- Pages of a few entries, so that neither this script nor the reply holds much past the bound.
local entries, size, after = {}, 0, ARGV[1]
while #entries < count do
  local page = redis.call('XRANGE', KEYS[1], '(' .. after, '+', 'COUNT', math.min(count - #entries, 16))
  if #page == 0 then
    break
  end
  for _, entry in ipairs(page) do
    local fields = entry[2]
    for i = 2, #fields, 2 do
      size = size + #fields[i]
    end
    if #entries > 0 and size > max_bytes then
      return {1, last, first, added, length, exists, entries, 1}
    end
    entries[#entries + 1] = entry
    after = entry[1]
  end
end
return {1, last, first, added, length, exists, entries, 0}
