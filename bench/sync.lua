-- Micro-benchmarks of the coordination primitives, for bench/sync.sh (which
-- runs each several times and prints medians and ranges) and for a look by
-- hand:
--
--   lunet-run bench/sync.lua what     what: pingpong | close | memory_sleep | memory_recv
--
-- Prints "key value" lines. A benchmark, not a test.
local lunet = require("lunet")
local now = require("bench.clock")

local what = arg and arg[1] or "pingpong"
local N = tonumber(os.getenv("BENCH_N") or "") or 200000

local function out(k, v) print(("%s %.6g"):format(k, v)) end

-- ns per sleep(0) round trip of one task (one yield and one resume).
local function sleep0(n)
  lunet.spawn(function() for _ = 1, n do lunet.sleep(0) end end)
  local t0 = now()
  lunet.run()
  return (now() - t0) / n * 1e9
end

-- ns per ping-pong round trip between two tasks over two rendezvous
-- channels (`cap` for buffered ones): A sends to B, B answers, A receives.
local function pingpong(n, cap)
  local ping, pong = lunet.channel(cap), lunet.channel(cap)
  lunet.spawn(function()
    for _ = 1, n do pong:send(ping:recv()) end
  end)
  local elapsed
  lunet.spawn(function()
    local t0 = now()
    for i = 1, n do
      ping:send(i)
      pong:recv()
    end
    elapsed = now() - t0
  end)
  lunet.run()
  return elapsed / n * 1e9
end

-- `m` tasks wait on one channel; it is closed: ns per woken task (close to
-- the last one resumed), and how many had resumed when a sleep(0) queued
-- right after the close came back (all of them: one ready-list batch).
local function close_wake(m)
  local ch = lunet.channel()
  local woke = 0
  for _ = 1, m do
    lunet.spawn(function()
      ch:recv()
      woke = woke + 1
    end)
  end
  local t0, t1, at_next
  lunet.spawn(function()
    t0 = now()
    ch:close()
    lunet.sleep(0)
    t1 = now()
    at_next = woke
  end)
  lunet.run()
  out("close_wake_ns_per_task", (t1 - t0) / m * 1e9)
  out("close_woken_in_next_batch", at_next)
end

local function rss_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- 100,000 tasks parked in a 60 s sleep, or in recv on one channel: KiB of
-- RSS and of Lua heap per 1,000 parked tasks.
local function memory(recv)
  local m = 100000
  local ch = lunet.channel()
  collectgarbage("collect")
  local rss0, heap0 = rss_kb(), collectgarbage("count")
  for _ = 1, m do
    lunet.spawn(function()
      if recv then ch:recv() else lunet.sleep(60000) end
    end)
  end
  collectgarbage("collect")
  local rss1, heap1 = rss_kb(), collectgarbage("count")
  local tag = recv and "recv" or "sleep"
  out("mem_rss_kb_per_1k_" .. tag, (rss1 - rss0) / (m / 1000))
  out("mem_heap_kb_per_1k_" .. tag, (heap1 - heap0) / (m / 1000))
  io.stdout:flush()
  os.exit(0) -- the parked tasks are not waited for
end

if what == "pingpong" then
  local s = sleep0(N)
  local p = pingpong(N, 0)
  local b = pingpong(N, 1)
  out("sleep0_ns", s)
  out("pingpong_ns", p)
  out("pingpong_buffered_ns", b)
  out("ratio_pingpong", p / s)
  out("ratio_pingpong_buffered", b / s)
elseif what == "close" then
  close_wake(10000)
elseif what == "memory_sleep" or what == "memory_recv" then
  memory(what == "memory_recv")
else
  error("unknown benchmark " .. tostring(what))
end
