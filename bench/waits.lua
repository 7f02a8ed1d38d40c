-- Micro-benchmarks of the scheduler's waits, for bench/compare.sh (which runs
-- this file on the build under test and on an earlier commit's build, in one
-- run) and for a quick look by hand:
--
--   lunet-run bench/waits.lua [what]     what: sleep0 | deadline | read | memory
--
-- Prints "key value" lines. A benchmark, not a test.
local lunet = require("lunet")
local socket = require("lunet.socket")
local now = require("bench.clock")

local what = arg and arg[1] or "all"
local N = tonumber(os.getenv("BENCH_N") or "") or 1000000
local has_deadline = lunet.deadline ~= nil

local function out(k, v) print(("%s %.6g"):format(k, v)) end

-- sleep(0) round trips with `co` coroutines, each optionally inside a deadline
-- (which arms and disarms a deadline on every wait).
local function sleep0(co, with_deadline)
  local per = math.floor(N / co)
  for _ = 1, co do
    lunet.spawn(function()
      local function loop() for _ = 1, per do lunet.sleep(0) end end
      if with_deadline then lunet.deadline(1e9, loop) else loop() end
    end)
  end
  local t0 = now()
  lunet.run()
  return (now() - t0) / (per * co) * 1e9
end

-- Ping-pong of 1 byte over loopback TCP: ns per round trip (two reads, two writes).
local function pingpong(rounds, timeout)
  local l = assert(socket.listen("tcp", "127.0.0.1", 0))
  local _, port = socket.getsockname(l)
  local elapsed
  lunet.spawn(function()
    local c = assert(socket.accept(l))
    if timeout and socket.settimeout then socket.settimeout(c, timeout) end
    for _ = 1, rounds do
      local d = socket.read(c)
      if not d then break end
      socket.write(c, d)
    end
    socket.close(c)
  end)
  lunet.spawn(function()
    local c = assert(socket.connect("127.0.0.1", port))
    if timeout and socket.settimeout then socket.settimeout(c, timeout) end
    local t0 = now()
    for _ = 1, rounds do
      socket.write(c, "x")
      socket.read(c)
    end
    elapsed = now() - t0
    socket.close(c)
    socket.close(l)
  end)
  lunet.run()
  return elapsed / rounds * 1e9
end

local function rss_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- 100,000 tasks parked in a 60 s sleep (each inside its own deadline with
-- `with_deadline`): KiB of RSS and of Lua heap per 1,000 sleepers. The task
-- handles spawn returns are dropped, as a program that ignores them would.
local function memory(with_deadline)
  local m = 100000
  collectgarbage("collect")
  local rss0, heap0 = rss_kb(), collectgarbage("count")
  for _ = 1, m do
    lunet.spawn(function()
      if with_deadline then
        lunet.deadline(120000, lunet.sleep, 60000)
      else
        lunet.sleep(60000)
      end
    end)
  end
  collectgarbage("collect")
  local rss1, heap1 = rss_kb(), collectgarbage("count")
  out(with_deadline and "mem_rss_kb_per_1k_deadline" or "mem_rss_kb_per_1k", (rss1 - rss0) / (m / 1000))
  out(with_deadline and "mem_heap_kb_per_1k_deadline" or "mem_heap_kb_per_1k", (heap1 - heap0) / (m / 1000))
  io.stdout:flush()
  os.exit(0) -- the sleepers are not waited for
end

if what == "all" or what == "sleep0" then
  out("sleep0_1_ns", sleep0(1, false))
  out("sleep0_100_ns", sleep0(100, false))
end
if (what == "all" or what == "deadline") and has_deadline then
  local plain = sleep0(100, false)
  local armed = sleep0(100, true)
  out("deadline_arm_disarm_ns", armed - plain)
end
if what == "all" or what == "read" then
  local r = tonumber(os.getenv("BENCH_ROUNDTRIPS") or "") or 100000
  out("pingpong_ns", pingpong(r, nil))
  if socket.settimeout then
    out("pingpong_timeout_ns", pingpong(r, 60000))
  end
end
if what == "memory" or what == "memory_deadline" then
  memory(what == "memory_deadline" and has_deadline)
end
