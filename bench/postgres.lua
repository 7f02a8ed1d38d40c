-- lunet.postgres benchmark, run by `make bench` with the release build.
--
-- Point SELECT by primary key and single-row INSERT (each its own
-- transaction, so every one waits for the server's WAL flush), in statements
-- per second, against the server of LUNET_DB_* (default: the local test
-- server, database `test`), in a table named for this run:
--   * 1 coroutine on 1 connection (every statement waits for the last);
--   * 64 coroutines spread over 8 connections;
--   * the synchronous baseline, one connection, no event loop:
--     - the same statements through libpq in a plain Rust program
--       (crates/lunet-postgres/examples/postgres_floor.rs, path in
--       LUNET_POSTGRES_FLOOR; skipped if unset);
--     - `pgbench -M prepared -c 1` running the same statements (skipped if
--       pgbench is not installed).
-- For reference, `pgbench -c 8 -j 2` shows what 8 synchronous connections
-- get from the same server and machine.
-- Target (issue 7): point SELECTs from 64 coroutines over 8 connections >= 2x
-- the synchronous single connection (the faster of the two baselines).
-- Each configuration runs for BENCH_SECONDS (default 2), BENCH_ROUNDS times
-- (default 3) interleaved with the others; the best run of each is shown.
-- Statements waiting on the same connection are pipelined by the driver,
-- and libuv's thread pool (UV_THREADPOOL_SIZE) bounds how many connections
-- work at once. A benchmark, not a test: numbers vary with the machine and
-- its load.
local lunet = require("lunet")
local postgres = require("lunet.postgres")
local now = require("bench.clock")

local SECONDS = tonumber(os.getenv("BENCH_SECONDS") or "") or 2
local ROWS = 10000
local server = {
  host = os.getenv("LUNET_DB_HOST") or "127.0.0.1",
  port = tonumber(os.getenv("LUNET_DB_PORT") or "") or 5432,
  user = os.getenv("LUNET_DB_USER") or "postgres",
  password = os.getenv("LUNET_DB_PASS"),
  database = os.getenv("LUNET_DB_NAME") or "test",
}
local function process_id()
  local f = assert(io.open("/proc/self/stat"))
  local id = f:read("*l"):match("^%d+")
  f:close()
  return id
end
local TABLE = ("lunet_bench_items_%s"):format(process_id())
local floor_bin = os.getenv("LUNET_POSTGRES_FLOOR")

local function check(v, err)
  if v == nil then error(err, 2) end
  return v
end

local SELECT = ("SELECT id, name, score FROM %s WHERE id = $1"):format(TABLE)
local INSERT = ("INSERT INTO %s(name, score) VALUES ($1, $2)"):format(TABLE)

-- Runs statements from `coroutines` coroutines over `conns` for `seconds`;
-- returns statements per second.
local function measure(conns, coroutines, seconds, method, sql, args_of)
  local finished, count, t_end = 0, 0, nil
  local t0 = now()
  local deadline = t0 + seconds
  for k = 1, coroutines do
    local c = conns[(k - 1) % #conns + 1]
    lunet.spawn(function()
      local i = k
      while now() < deadline do
        check(c[method](c, sql, args_of(i)))
        count = count + 1
        i = i + coroutines
      end
      finished = finished + 1
      if finished == coroutines then t_end = now() end
    end)
  end
  while not t_end do lunet.sleep(50) end
  return count / (t_end - t0)
end

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local has_pgbench = os.execute("command -v pgbench >/dev/null 2>&1") == 0

-- The synchronous baselines, on the same table (run between the lunet runs).
local function run_floor()
  if not floor_bin then return {} end
  local out = {}
  local cmd = ("%s %s %d %s %s %s %d %s"):format(floor_bin, sh_quote(server.host), server.port, sh_quote(server.user),
    sh_quote(server.database), TABLE, ROWS, SECONDS)
  local p = assert(io.popen(cmd))
  for line in p:lines() do
    local k, v = line:match("^(%S+) (%S+)$")
    if k then out[k] = tonumber(v) end
  end
  p:close()
  return out
end

local function run_pgbench(name, script, clients)
  if not has_pgbench then return nil end
  clients = clients or 1
  local dir = os.getenv("BENCH_DIR") or ".tmp"
  os.execute("mkdir -p " .. dir)
  local path = ("%s/pgbench-%s-%s.sql"):format(dir, name, process_id())
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local env = server.password and ("PGPASSWORD=" .. sh_quote(server.password) .. " ") or ""
  local cmd = ("%spgbench -n -M prepared -c %d -j %d -T %d -h %s -p %d -U %s -f %s %s 2>&1"):format(env, clients,
    math.min(clients, 2), math.max(1, math.floor(SECONDS + 0.5)), sh_quote(server.host), server.port,
    sh_quote(server.user), sh_quote(path), sh_quote(server.database))
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return tonumber(out:match("tps = ([%d%.]+)"))
end

-- Each configuration runs ROUNDS times, interleaved with the others, and
-- keeps its best rate: the machine may be shared, and the best of a few
-- runs is the fairest comparison between runs made at different moments.
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "") or 3
local best = {}
local function keep(name, rate)
  if rate and (not best[name] or rate > best[name]) then best[name] = rate end
end

local function select_args(j) return (j * 7919) % ROWS + 1 end
local function insert_args(j) return "new item", j end

local failure
lunet.spawn(function()
  local ok, err = pcall(function()
    local setup = check(postgres.open(server))
    check(setup:exec(([[
      DROP TABLE IF EXISTS %s;
      CREATE TABLE %s(id bigserial PRIMARY KEY, name text NOT NULL, score bigint NOT NULL);
      INSERT INTO %s(name, score) SELECT 'item ' || x, x * 3 FROM generate_series(1, %d) AS x;
      ANALYZE %s;
    ]]):format(TABLE, TABLE, TABLE, ROWS, TABLE)))
    setup:close()
  end)
  if not ok then failure = err end
end)
lunet.run()
if failure then error(failure, 0) end

for _ = 1, ROUNDS do
  lunet.spawn(function()
    local ok, err = pcall(function()
      local conns = {}
      for i = 1, 8 do conns[i] = check(postgres.open(server)) end
      -- Warm up every connection (prepared statements, caches).
      measure(conns, 8, 0.2, "query", SELECT, select_args)
      measure(conns, 8, 0.2, "exec", INSERT, insert_args)
      keep("select1", measure({ conns[1] }, 1, SECONDS, "query", SELECT, select_args))
      keep("select64", measure(conns, 64, SECONDS, "query", SELECT, select_args))
      keep("insert1", measure({ conns[1] }, 1, SECONDS, "exec", INSERT, insert_args))
      keep("insert64", measure(conns, 64, SECONDS, "exec", INSERT, insert_args))
      for _, c in ipairs(conns) do c:close() end
    end)
    if not ok then failure = err end
  end)
  lunet.run()
  if failure then break end
  local floor = run_floor()
  keep("floor_select", floor.select_per_s)
  keep("floor_insert", floor.insert_per_s)
  local select_script = ("\\set id random(1, %d)\nSELECT id, name, score FROM %s WHERE id = :id;\n"):format(ROWS, TABLE)
  keep("pgbench_select", run_pgbench("select", select_script))
  keep("pgbench_select8", run_pgbench("select8", select_script, 8))
  keep("pgbench_insert", run_pgbench("insert", ("\\set n random(1, 1000000)\nINSERT INTO %s(name, score) VALUES ('new item', :n);\n"):format(TABLE)))
end

lunet.spawn(function()
  local c = check(postgres.open(server))
  check(c:exec("DROP TABLE IF EXISTS " .. TABLE))
  c:close()
end)
lunet.run()
if failure then error(failure, 0) end

local function row(name, rate, base)
  local ratio = base and ("%.2fx"):format(rate / base) or ""
  print(("%-52s %12.0f %10.1f %10s"):format(name, rate, 1e6 / rate, ratio))
end
local function baseline(name, rate)
  if rate then print(("%-52s %12.0f %10.1f"):format(name, rate, 1e6 / rate)) end
end
local function max(a, b) if a and b then return math.max(a, b) end return a or b end

-- The ratio is taken against the faster of the two synchronous baselines.
local sync_select = max(best.pgbench_select, best.floor_select)
local sync_insert = max(best.pgbench_insert, best.floor_insert)
print(("postgres: %s:%d, best of %d runs of %g s each, %d preloaded rows, UV_THREADPOOL_SIZE=%s"):format(
  server.host, server.port, ROUNDS, SECONDS, ROWS, os.getenv("UV_THREADPOOL_SIZE") or "(unset)"))
print(("%-52s %12s %10s %10s"):format("benchmark", "stmts/s", "us/stmt", "vs sync"))
baseline("SELECT by PK, pgbench -M prepared -c 1", best.pgbench_select)
baseline("SELECT by PK, synchronous libpq (Rust), 1 connection", best.floor_select)
row("SELECT by PK, 1 coroutine / 1 connection", best.select1, sync_select)
row("SELECT by PK, 64 coroutines / 8 connections", best.select64, sync_select)
if best.pgbench_select8 then
  row("SELECT by PK, pgbench -M prepared -c 8 -j 2 (reference)", best.pgbench_select8, sync_select)
end
baseline("INSERT 1 row, pgbench -M prepared -c 1", best.pgbench_insert)
baseline("INSERT 1 row, synchronous libpq (Rust), 1 connection", best.floor_insert)
row("INSERT 1 row, 1 coroutine / 1 connection", best.insert1, sync_insert)
row("INSERT 1 row, 64 coroutines / 8 connections", best.insert64, sync_insert)
if sync_select then
  local r = best.select64 / sync_select
  print(("target: SELECT, 64 coroutines / 8 connections >= 2x one synchronous connection: %.2fx (%s)"):format(r,
    r >= 2 and "met" or "MISSED"))
  local ri = best.insert64 / sync_insert
  print(("        INSERT, 64 coroutines / 8 connections vs one synchronous connection: %.2fx"):format(ri))
else
  print("(synchronous baselines skipped: no pgbench, and LUNET_POSTGRES_FLOOR unset)")
end
