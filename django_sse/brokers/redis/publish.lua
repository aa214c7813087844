-- django-sse: record one event in a channel's history and announce it, atomically.
-- KEYS[1]  the channel's history stream, "<prefix><channel>"
-- ARGV[1]  the pub/sub channel, "<prefix><channel>" (a cluster: both "<prefix>{<channel>}")
-- ARGV[2]  event name      ARGV[3]  data (UTF-8 text)
-- ARGV[4]  MAXLEN (approximate)   ARGV[5]  history TTL in milliseconds (0: keep)
-- ARGV[6]  the command that announces it: PUBLISH when absent, SPUBLISH in a cluster
--          (then ARGV[1] is KEYS[1]: the shard channel is declared, in the same slot)
-- Returns {the new event id ("<ms>-<seq>"), the id of the event before it ("0-0": none)}.
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local previous = '0-0'
if newest[1] then
  previous = newest[1][1]
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'event', ARGV[2], 'data', ARGV[3])
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  local now = redis.call('TIME')
  local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl
  if cutoff > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', cutoff))
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call(ARGV[6] or 'PUBLISH', ARGV[1], '1\n' .. id .. '\n' .. ARGV[2] .. '\n' .. ARGV[3])
return {id, previous}
