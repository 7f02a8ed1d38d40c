-- Point SELECTs by primary key from 16 coroutines on 16 connections (one
-- each), for one driver: DB=sqlite3 (a file database in WAL mode), mysql or
-- postgres (the local test servers). Prints one line:
--   <driver> <statements/s> <process CPU us per statement>
-- Run by bench/dbconc.sh, which alternates builds and thread-pool sizes.
local lunet = require("lunet")
local now = require("bench.clock")
local dbbench = require("bench.dbbench")
local check = dbbench.check

local DB = os.getenv("DB") or "sqlite3"
local N = tonumber(os.getenv("BENCH_DB_N") or "") or 100000
local ROWS = 10000
local CONNS = 16
local driver = require("lunet." .. DB)
local dir = os.getenv("BENCH_DIR") or ".tmp"
os.execute("mkdir -p " .. dir)
local path = dir .. "/bench-dbconc.db"
local function remove_db()
  for _, s in ipairs({ "", "-wal", "-shm" }) do os.remove(path .. s) end
end

local config = ({
  sqlite3 = path,
  mysql = { host = "127.0.0.1", user = "root", password = "", database = "test" },
  postgres = { host = "127.0.0.1", user = "postgres", database = "postgres" },
})[DB]
local table_name = ("bench_conc_%d"):format(lunet.getpid())
local ph = DB == "postgres" and "$1" or "?"
local SELECT = ("SELECT id, name, score FROM %s WHERE id = %s"):format(table_name, ph)

lunet.spawn(function()
  if DB == "sqlite3" then remove_db() end
  local setup = check(driver.open(config))
  if DB == "sqlite3" then check(setup:exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")) end
  check(setup:exec(("CREATE TABLE %s(id INTEGER PRIMARY KEY, name VARCHAR(32) NOT NULL, score INTEGER NOT NULL)"):format(table_name)))
  local values = {}
  for i = 1, ROWS do values[i] = ("(%d, 'item %d', %d)"):format(i, i, i * 3) end
  check(setup:exec(("INSERT INTO %s(id, name, score) VALUES %s"):format(table_name, table.concat(values, ","))))
  local conns = {}
  for i = 1, CONNS do conns[i] = check(driver.open(config)) end
  local function args(j) return (j * 7919) % ROWS + 1 end
  dbbench.measure(conns, CONNS, 8000, "query", SELECT, args) -- warm up
  local c0 = os.clock()
  local s, n = dbbench.measure(conns, CONNS, N, "query", SELECT, args)
  local cpu = os.clock() - c0
  print(("%s %.0f %.2f"):format(DB, n / s, cpu / n * 1e6))
  for _, c in ipairs(conns) do c:close() end
  check(setup:exec("DROP TABLE " .. table_name))
  setup:close()
end)
lunet.run()
if DB == "sqlite3" then remove_db() end
