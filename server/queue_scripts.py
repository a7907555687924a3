"""Lua scripts of the Redis dispatcher (``server/queue.py``), each one atomic in Redis."""

ENQUEUE = """
for _, q in ipairs(ARGV) do
  redis.call('HSET', KEYS[2], q, redis.call('XADD', KEYS[1], '*', 'q', q))
end
return #ARGV
"""

CANDIDATES = """
local stream, cursor_key, gate = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, min_idle, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
if redis.call('SET', gate, '1', 'PX', ARGV[5], 'NX') then
  local cur = redis.call('GET', cursor_key) or '0-0'
  local r = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, cur, 'COUNT', n)
  redis.call('SET', cursor_key, r[1])
  for _, e in ipairs(r[2]) do
    if e[2] then out[#out + 1] = e[1]; out[#out + 1] = e[2][2] end
  end
  if #out / 2 >= n then redis.call('DEL', gate) end
end
local got = #out / 2
if got < n then
  local rd = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n - got,
                        'STREAMS', stream, '>')
  if rd then
    for _, e in ipairs(rd[1][2]) do out[#out + 1] = e[1]; out[#out + 1] = e[2][2] end
  end
end
if #out > 0 then
  -- time every candidate to the lease it is about to get (the usual outcome); the claim
  -- re-times or acks the few that the database does not lease
  local args = {stream, group, consumer, '0'}
  for i = 1, #out, 2 do args[#args + 1] = out[i] end
  args[#args + 1] = 'IDLE'; args[#args + 1] = ARGV[6]; args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return out
"""

ACK = """
for _, q in ipairs(ARGV) do
  local e = redis.call('HGET', KEYS[2], q)
  if e then
    redis.call('XACK', KEYS[1], KEYS[3], e)
    redis.call('XDEL', KEYS[1], e)
    redis.call('HDEL', KEYS[2], q)
  end
end
return 1
"""
