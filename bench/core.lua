-- Core micro-benchmarks, run by `make bench` with the release build:
-- sleep(0) round trips and spawn+finish, printed as a table.
-- A benchmark, not a test: numbers vary with machine load.
local lunet = require("lunet")
local now = require("bench.clock")

local N = tonumber(os.getenv("BENCH_N") or "") or 2000000
local rows = {}

local function report(name, count, seconds, target)
  rows[#rows + 1] = { name, count, seconds, target }
end

-- 1. sleep(0) round trips from one coroutine (yield, idle callback, resume).
local function sleep0(coroutines)
  local per = math.floor(N / coroutines)
  local t0
  for _ = 1, coroutines do
    lunet.spawn(function()
      for _ = 1, per do lunet.sleep(0) end
    end)
  end
  t0 = now()
  lunet.run()
  return per * coroutines, now() - t0
end

local n, s = sleep0(1)
report("sleep(0) round trip, 1 coroutine", n, s, 250)
n, s = sleep0(100)
report("sleep(0) round trip, 100 coroutines", n, s, 250)

-- 2. spawn + finish (no yield), and spawn + one sleep(0) + finish.
do
  local f = function() end
  local t0 = now()
  for _ = 1, N do lunet.spawn(f) end
  report("spawn + finish", N, now() - t0)
  local g = function() lunet.sleep(0) end
  local m = math.floor(N / 4)
  t0 = now()
  for _ = 1, m do lunet.spawn(g) end
  lunet.run()
  report("spawn + sleep(0) + finish", m, now() - t0)
end

-- 3. timers: many coroutines sleeping 1 ms.
do
  local m = 100000
  local t0 = now()
  for i = 1, m do lunet.spawn(function() lunet.sleep(1 + i % 3) end) end
  lunet.run()
  report("sleep(1..3) x 100k concurrent", m, now() - t0)
end

print(("%-38s %12s %12s %10s %s"):format("benchmark", "ops", "ops/s", "ns/op", "target"))
for _, r in ipairs(rows) do
  local name, count, secs, target = r[1], r[2], r[3], r[4]
  local ns = secs / count * 1e9
  local verdict = ""
  if target then verdict = ("<= %d ns: %s"):format(target, ns <= target and "met" or "MISSED") end
  print(("%-38s %12d %12.0f %10.1f %s"):format(name, count, count / secs, ns, verdict))
end
