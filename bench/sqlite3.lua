-- lunet.sqlite3 benchmark, run by `make bench` with the release build.
--
-- Point SELECT by primary key and single-row INSERT on a file database (WAL,
-- synchronous=NORMAL), in statements per second:
--   * 1 coroutine on 1 connection (every statement waits for the last);
--   * 64 coroutines spread over 4 connections;
--   * for reference, a one-row SELECT on an in-memory database from one
--     coroutine (the hand-off to the thread pool and back, nearly alone);
--   * the floor: the same statements run synchronously through rusqlite in a
--     plain single-threaded Rust program (crates/lunet-sqlite3/examples/sqlite3_floor.rs,
--     path in LUNET_SQLITE3_FLOOR; skipped if unset).
-- Targets (issue 5): added latency per statement at 1 coroutine <= 20 us;
-- point SELECTs with 64 coroutines over 4 connections >= 1.0x the floor.
-- A benchmark, not a test: numbers vary with the machine and its load.
local lunet = require("lunet")
local sqlite3 = require("lunet.sqlite3")
local now = require("bench.clock")

local N = tonumber(os.getenv("BENCH_DB_N") or "") or 100000
local ROWS = 10000
local dir = os.getenv("BENCH_DIR") or ".tmp"
os.execute("mkdir -p " .. dir)
local path = dir .. "/bench-sqlite3.db"
local floor_bin = os.getenv("LUNET_SQLITE3_FLOOR")

local function remove_db(p)
  for _, s in ipairs({ "", "-wal", "-shm" }) do os.remove(p .. s) end
end

local dbbench = require("bench.dbbench")
local check = dbbench.check

local SELECT = "SELECT id, name, score FROM items WHERE id = ?"
local INSERT = "INSERT INTO items(name, score) VALUES (?, ?)"

local measure = dbbench.measure
local results = {}

-- Process CPU (every thread) per statement of each measured row.
local cpu = {}
local function timed(key, ...)
  local c0 = os.clock()
  local s, n = measure(...)
  results[key] = n / s
  cpu[key] = (os.clock() - c0) / n * 1e6
end

-- The core's own hand-off cost, for reference: an empty thread-pool job
-- through the driver ABI (test module beside the build, if present).
local core_dir = (package.searchpath("lunet", package.cpath) or ""):match("^(.*)/[^/]*$") or "."
package.cpath = core_dir .. "/test/?.so;" .. package.cpath
local has_testmod, testmod = pcall(require, "lunet_testmod")

lunet.spawn(function()
  if has_testmod then
    local n, t0 = math.floor(N / 2), now()
    for _ = 1, n do testmod.sum(1, 0) end
    results.empty_job = n / (now() - t0)
  end

  -- The hand-off alone around the cheapest statement: one coroutine, one
  -- in-memory connection, the same one-row SELECT back to back.
  local lone = check(sqlite3.open())
  check(lone:exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t VALUES (1, 2)"))
  for _ = 1, 2000 do check(lone:query("SELECT v FROM t WHERE id = ?", 1)) end
  do
    local n, t0, c0 = math.floor(N / 5), now(), os.clock()
    for _ = 1, n do check(lone:query("SELECT v FROM t WHERE id = ?", 1)) end
    results.lone = n / (now() - t0)
    cpu.lone = (os.clock() - c0) / n * 1e6
  end
  lone:close()

  remove_db(path)
  local setup = check(sqlite3.open(path))
  check(setup:exec([[
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER NOT NULL);
    BEGIN;
  ]]))
  for i = 1, ROWS do check(setup:exec(INSERT, "item " .. i, i * 3)) end
  check(setup:exec("COMMIT"))

  local conns = {}
  for i = 1, 4 do
    conns[i] = check(sqlite3.open(path))
    check(conns[i]:exec("PRAGMA synchronous = NORMAL"))
  end
  local function select_args(j) return (j * 7919) % ROWS + 1 end
  local function insert_args(j) return "new item", j end

  -- Warm up each connection's statement cache and page cache.
  measure(conns, 4, 4000, "query", SELECT, select_args)

  timed("select1", { conns[1] }, 1, N, "query", SELECT, select_args)
  timed("select64", conns, 64, N, "query", SELECT, select_args)
  timed("insert1", { conns[1] }, 1, N, "exec", INSERT, insert_args)
  timed("insert64", conns, 64, N, "exec", INSERT, insert_args)

  for _, c in ipairs(conns) do c:close() end
  setup:close()

  -- Diagnostic: the same SELECTs on 4 in-memory copies (no file locks shared
  -- between connections), to separate lunet's cost from SQLite's.
  local mems = {}
  for i = 1, 4 do
    mems[i] = check(sqlite3.open())
    check(mems[i]:exec([[
      CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER NOT NULL);
      INSERT INTO items(name, score)
        WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ]] .. ROWS .. [[)
        SELECT 'item ' || x, x * 3 FROM n;
    ]]))
  end
  measure(mems, 4, 4000, "query", SELECT, select_args)
  timed("select64mem", mems, 64, N, "query", SELECT, select_args)
  for _, c in ipairs(mems) do c:close() end
end)
lunet.run()
remove_db(path)

local floor = {}
if floor_bin then
  local p = assert(io.popen(("%s %s %d %d"):format(floor_bin, dir .. "/bench-sqlite3-floor.db", ROWS, N)))
  for line in p:lines() do
    local k, v = line:match("^(%S+) (%S+)$")
    if k then floor[k] = tonumber(v) end
  end
  p:close()
end

local function row(name, key, floor_rate)
  local rate = results[key]
  local ratio, added = "", ""
  if floor_rate then
    ratio = ("%.2fx"):format(rate / floor_rate)
    added = ("%+.1f"):format(1e6 / rate - 1e6 / floor_rate)
  end
  print(("%-44s %12.0f %10.1f %10s %12s %8.2f"):format(name, rate, 1e6 / rate, ratio, added, cpu[key]))
end

print(("sqlite3: %d statements per run, %d preloaded rows, file database in WAL mode"):format(N, ROWS))
print(("%-44s %12s %10s %10s %12s %8s"):format("benchmark", "stmts/s", "us/stmt", "vs floor", "added us", "CPU us"))
if floor.select_per_s then
  print(("%-44s %12.0f %10.1f"):format("SELECT by PK, synchronous rusqlite (floor)", floor.select_per_s, 1e6 / floor.select_per_s))
end
row("SELECT by PK, 1 coroutine / 1 connection", "select1", floor.select_per_s)
row("SELECT by PK, 64 coroutines / 4 connections", "select64", floor.select_per_s)
row("SELECT by PK, 64 co / 4 in-memory copies", "select64mem", floor.select_per_s)
if floor.insert_per_s then
  print(("%-44s %12.0f %10.1f"):format("INSERT 1 row, synchronous rusqlite (floor)", floor.insert_per_s, 1e6 / floor.insert_per_s))
end
row("INSERT 1 row, 1 coroutine / 1 connection", "insert1", floor.insert_per_s)
row("INSERT 1 row, 64 coroutines / 4 connections", "insert64", floor.insert_per_s)

row("lone SELECT on :memory:, 1 coroutine", "lone")
if results.empty_job then
  print(("%-44s %12.0f %10.1f"):format("empty pool job via the core ABI, 1 coroutine", results.empty_job, 1e6 / results.empty_job))
end
if floor.select_per_s then
  local added = 1e6 / results.select1 - 1e6 / floor.select_per_s
  local added_ins = 1e6 / results.insert1 - 1e6 / floor.insert_per_s
  print(("target: added latency at 1 coroutine <= 20 us: SELECT %+.1f us (%s), INSERT %+.1f us (%s)"):format(
    added, added <= 20 and "met" or "MISSED", added_ins, added_ins <= 20 and "met" or "MISSED"))
  local r = results.select64 / floor.select_per_s
  print(("target: SELECT 64 coroutines / 4 connections >= 1.0x floor: %.2fx (%s)"):format(r, r >= 1 and "met" or "MISSED"))
else
  print("(floor skipped: set LUNET_SQLITE3_FLOOR to the sqlite3_floor example binary)")
end
