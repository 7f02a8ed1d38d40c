-- Pool overhead: the same statements through a held connection and through
-- a pool (sqlite3, in-memory database, 1 coroutine), alternating in one run;
-- and a bare acquire/release (pool:with with an empty function). Prints the
-- medians over BENCH_ROUNDS rounds, in microseconds per call.
local lunet = require("lunet")
local now = require("bench.clock")
local sqlite3 = require("lunet.sqlite3")

local N = tonumber(os.getenv("BENCH_DB_N") or "") or 20000
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 7

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)], t[1], t[#t]
end

lunet.spawn(function()
  local conn = assert(sqlite3.open())
  local pool = sqlite3.pool({ path = ":memory:" }, { size = 1 })
  assert(pool:query("SELECT 1 AS x")) -- opens its connection
  local held, pooled, bare = {}, {}, {}
  local function noop() end
  for r = 1, ROUNDS do
    local t0 = now()
    for _ = 1, N do assert(conn:query("SELECT 1 AS x")) end
    held[r] = (now() - t0) / N * 1e6
    t0 = now()
    for _ = 1, N do assert(pool:query("SELECT 1 AS x")) end
    pooled[r] = (now() - t0) / N * 1e6
    t0 = now()
    for _ = 1, N do pool:with(noop) end
    bare[r] = (now() - t0) / N * 1e6
  end
  local diffs = {}
  for r = 1, ROUNDS do diffs[r] = pooled[r] - held[r] end
  print(("pool overhead (sqlite3 in-memory, 1 coroutine, %d calls x %d rounds), us per call: median (range)"):format(N, ROUNDS))
  print(("  held connection query   %6.2f (%.2f-%.2f)"):format(median(held)))
  print(("  pool:query              %6.2f (%.2f-%.2f)"):format(median(pooled)))
  print(("  difference, same round  %6.2f (%.2f-%.2f)"):format(median(diffs)))
  print(("  pool:with(empty fn)     %6.2f (%.2f-%.2f)"):format(median(bare)))
  pool:close()
  conn:close()
end)
lunet.run()
