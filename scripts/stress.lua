-- Concurrent stress test, run by `make stress` on the tracing (debug) build.
--
-- STRESS_WORKERS coroutines (default 50) each perform STRESS_OPS operations
-- (default 100): sleeps of 0 and 1 ms, task groups (children passing values
-- over a channel and joined by the group's wait; a failing child that cancels
-- its sibling), wait_any over a channel and a task holding a semaphore,
-- timeouts (lunet.deadline around a sleep and a PostgreSQL statement, a join
-- with a time limit, a UDP receive with a handle limit) and cancellations (a
-- sleeping child, a child waiting on pool work),
-- thread-pool work through the driver ABI, fs.stat(".") and fs.scandir(".")
-- on libuv's thread pool, a UDP datagram sent and received on a per-worker
-- socket pair (closed when the worker ends), SQLite, MySQL and PostgreSQL
-- statements, and errors raised and caught — every
-- call wrapped in pcall, so yields cross pcall boundaries. Prints a summary and
-- exits non-zero on any failed operation or on a timeout (STRESS_TIMEOUT
-- seconds, default 300). The tracing build checks the coroutine reference
-- balance when the process exits and aborts on any imbalance.
local lunet = require("lunet")
local fs = require("lunet.fs")
local udp = require("lunet.udp")

local workers = tonumber(os.getenv("STRESS_WORKERS") or "") or 50
local ops = tonumber(os.getenv("STRESS_OPS") or "") or 100
local timeout_s = tonumber(os.getenv("STRESS_TIMEOUT") or "") or 300

-- The test-only ABI module sits in test/ beside lunet.so when built.
local core = package.searchpath("lunet", package.cpath)
local dir = core and core:match("^(.*)/[^/]*$") or "."
package.cpath = dir .. "/test/?.so;" .. package.cpath
local has_pool, testmod = pcall(require, "lunet_testmod")
local has_sqlite3, sqlite3 = pcall(require, "lunet.sqlite3")
local shared_db -- one connection used by every worker, opened by the first that needs it
-- MySQL: the server in LUNET_DB_* (default the local test server). If it
-- cannot be reached the MySQL operations become sleeps (the specs are where
-- an unreachable server fails the run).
local has_mysql, mysql = pcall(require, "lunet.mysql")
local mysql_params = {
  host = os.getenv("LUNET_DB_HOST") or "127.0.0.1",
  port = tonumber(os.getenv("LUNET_DB_PORT") or "") or 3306,
  user = os.getenv("LUNET_DB_USER") or "root",
  password = os.getenv("LUNET_DB_PASS") or "",
  database = os.getenv("LUNET_DB_NAME") or "test",
}
local shared_mysql, mysql_down
-- PostgreSQL (the LUNET_DB_* server, default the local test server) unless
-- STRESS_POSTGRES=0. `make stress` starts the test server first.
local use_postgres = os.getenv("STRESS_POSTGRES") ~= "0"
local has_postgres, postgres = false, nil
if use_postgres then has_postgres, postgres = pcall(require, "lunet.postgres") end
local pg_server = {
  host = os.getenv("LUNET_DB_HOST") or "127.0.0.1",
  port = tonumber(os.getenv("LUNET_DB_PORT") or "") or 5432,
  user = os.getenv("LUNET_DB_USER") or "postgres",
  password = os.getenv("LUNET_DB_PASS"),
  database = os.getenv("LUNET_DB_NAME") or "test",
}
local pg_shared -- shared by every worker: its statements are pipelined

local counts, failures, finished = {}, {}, 0

local function count(kind) counts[kind] = (counts[kind] or 0) + 1 end

-- Each worker's UDP socket pair, bound on first use: from = sender, to = receiver.
local udp_pairs = {}
local function udp_pair(w)
  local p = udp_pairs[w]
  if not p then
    local from = assert(udp.bind("127.0.0.1", 0))
    local to = assert(udp.bind("127.0.0.1", 0))
    local _, port = to:getsockname()
    p = { from = from, to = to, port = port, n = 0 }
    udp_pairs[w] = p
  end
  return p
end

local operations = {
  function() lunet.sleep(0); count("sleep(0)") end,
  function() lunet.sleep(1); count("sleep(1)") end,
  function()
    -- A producer and two consumers over a channel, in a group.
    local g, ch, got = lunet.group(), lunet.channel(1), 0
    g:spawn(function()
      for i = 1, 4 do assert(ch:send(i)) end
      ch:close()
    end)
    for _ = 1, 2 do
      g:spawn(function()
        while true do
          local v = ch:recv()
          if v == nil then return end
          got = got + v
        end
      end)
    end
    local ok, err = g:wait()
    assert(ok == true, "group wait gave " .. tostring(err))
    assert(got == 10, "the channel delivered " .. got)
    -- A failing child cancels its sibling; the group's wait returns the failure.
    local bad = lunet.group()
    local sibling = bad:spawn(lunet.sleep, 1000)
    bad:spawn(function() lunet.sleep(0); error("child failed", 0) end)
    ok, err = bad:wait()
    assert(ok == false and err == "child failed", "the failed group gave " .. tostring(err))
    assert(sibling:status() == "cancelled", "the sibling is " .. sibling:status())
    count("group+channel")
  end,
  function()
    -- wait_any over an idle channel and a task that holds a semaphore briefly.
    local sem, idle, wg = lunet.semaphore(1), lunet.channel(), lunet.waitgroup()
    wg:add(2)
    local holder = lunet.spawn(function()
      assert(sem:acquire())
      lunet.sleep(1)
      sem:release()
      wg:done()
    end)
    local i = lunet.wait_any({ idle, holder }, 1000)
    assert(i == 2, "wait_any gave " .. tostring(i))
    assert(sem:acquire(1000), "the semaphore was not released")
    sem:release()
    wg:done()
    assert(wg:wait(1000) == true, "the wait group did not reach zero")
    count("wait_any")
  end,
  function()
    local r, err = lunet.deadline(1, lunet.sleep, 50)
    assert(r == nil and err == "timeout", "deadline around a sleep gave " .. tostring(err))
    count("deadline")
  end,
  function()
    local child = lunet.spawn(lunet.sleep, 1000)
    lunet.sleep(0)
    child:cancel()
    local ok, err = child:join()
    assert(ok == false and err == "cancelled", "cancelled child joined with " .. tostring(err))
    count("cancel")
  end,
  function()
    local child = lunet.spawn(function() lunet.sleep(20); return "late" end)
    local r, err = child:join(1)
    assert(r == nil and err == "timeout", "join(1) gave " .. tostring(err))
    local ok, v = child:join()
    assert(ok == true and v == "late", "the child did not go on after the join timed out")
    count("join timeout")
  end,
  function()
    if not has_pool then return count("sleep(0)") end
    local child = lunet.spawn(testmod.sum, 1000, 0)
    child:cancel()
    local ok, err = child:join()
    assert(ok == false and err == "cancelled", "cancelled pool work joined with " .. tostring(err))
    count("cancel pool work")
  end,
  function(w)
    local p = udp_pair(w)
    udp.settimeout(p.to, 1)
    local data, _, err = p.to:recv()
    udp.settimeout(p.to, nil)
    assert(data == nil and err == "timeout", "udp recv with a 1 ms limit gave " .. tostring(err))
    count("udp timeout")
  end,
  function()
    local ok, err = pcall(function() lunet.sleep(0); error("expected") end)
    assert(not ok and tostring(err):find("expected"), "error was not caught")
    count("error in pcall")
  end,
  function()
    if not has_pool then return count("sleep(0)") end
    local s = testmod.sum(100, 0)
    assert(s == 5050, "pool work returned " .. tostring(s))
    count("pool work")
  end,
  function()
    local st, err = fs.stat(".")
    assert(st and st.type == "dir", "fs.stat('.') failed: " .. tostring(err))
    count("fs.stat")
  end,
  function()
    local list, err = fs.scandir(".")
    assert(list and #list > 0 and list[1].name, "fs.scandir('.') failed: " .. tostring(err))
    count("fs.scandir")
  end,
  function(w)
    local p = udp_pair(w)
    p.n = p.n + 1
    local msg = ("worker %d datagram %d"):format(w, p.n)
    assert(p.from:send("127.0.0.1", p.port, msg))
    local data, _, err = p.to:recv()
    assert(data == msg, "udp.recv returned " .. tostring(data) .. " " .. tostring(err))
    count("udp send+recv")
  end,
  function()
    if not has_sqlite3 then return count("sleep(0)") end
    if not shared_db then
      local c = assert(sqlite3.open())
      if shared_db then sqlite3.close(c) else shared_db = c end -- another worker won the race
      assert(sqlite3.exec(shared_db, "CREATE TABLE IF NOT EXISTS s(v)"))
    end
    local r = assert(sqlite3.exec(shared_db, "INSERT INTO s VALUES (?)", "x"))
    local rows = assert(sqlite3.query(shared_db, "SELECT v FROM s WHERE rowid = ?", r.last_insert_id))
    assert(rows[1].v == "x", "sqlite3 returned the wrong row")
    -- A connection of its own, opened and closed, errors included.
    local own = assert(sqlite3.open())
    local none, err = sqlite3.query(own, "SELECT * FROM missing")
    assert(none == nil and err == "no such table: missing", tostring(err))
    sqlite3.close(own)
    count("sqlite3")
  end,
  function()
    if not has_mysql or mysql_down then return count("sleep(0)") end
    if not shared_mysql then
      local c, err = mysql.open(mysql_params)
      if not c then
        mysql_down = err
        return count("sleep(0)")
      end
      if shared_mysql then mysql.close(c) else shared_mysql = c end
      assert(mysql.exec(shared_mysql,
        "CREATE TEMPORARY TABLE IF NOT EXISTS s(id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10))"))
    end
    local r = assert(mysql.exec(shared_mysql, "INSERT INTO s(v) VALUES (?)", "x"))
    local rows = assert(mysql.query(shared_mysql, "SELECT v FROM s WHERE id = ?", r.last_insert_id))
    assert(rows[1].v == "x", "mysql returned the wrong row")
    -- A connection of its own, opened and closed, errors included.
    local own = assert(mysql.open(mysql_params))
    local none, err = mysql.query(own, "SELECT * FROM lunet_stress_missing.t")
    assert(none == nil and err:find("doesn't exist", 1, true), tostring(err))
    mysql.close(own)
    count("mysql")
  end,
  function()
    if not use_postgres then return count("sleep(0)") end
    assert(has_postgres, "lunet.postgres did not load: " .. tostring(postgres))
    if not pg_shared then
      local c, err = postgres.open(pg_server)
      assert(c, "postgres unreachable (start it with scripts/db-up.sh postgres, or set STRESS_POSTGRES=0): " .. tostring(err))
      if pg_shared then postgres.close(c) else pg_shared = c end
    end
    local v = math.random(1, 1e6)
    local rows = assert(pg_shared:query("SELECT $1::int8 + 1 AS v, $2::bytea AS b", v, "a\0b"))
    assert(rows[1].v == v + 1 and rows[1].b == "a\0b", "postgres returned the wrong row")
    local none, err = pg_shared:query("SELECT 1 / $1::int", 0)
    assert(none == nil and err:find("division by zero", 1, true), tostring(err))
    -- A statement whose wait times out: its results are dropped when it ends.
    none, err = lunet.deadline(2, pg_shared.query, pg_shared, "SELECT pg_sleep(0.05)")
    assert(none == nil and err == "timeout", "pg statement under a 2 ms deadline gave " .. tostring(err))
    -- A connection of its own, with a transaction rolled back, then closed.
    local own = assert(postgres.open(pg_server))
    assert(own:exec("BEGIN"))
    assert(own:exec("CREATE TEMP TABLE t(v int)"))
    assert(own:exec("INSERT INTO t VALUES ($1)", v))
    assert(own:exec("ROLLBACK"))
    postgres.close(own)
    count("postgres")
  end,
}

-- The workers are the children of one group, whose wait is the time limit.
local all = lunet.group()
for w = 1, workers do
  all:spawn(function()
    for i = 1, ops do
      local op = operations[(w * 3 + i) % #operations + 1]
      local ok, err = pcall(op, w)
      if not ok then failures[#failures + 1] = ("worker %d op %d: %s"):format(w, i, tostring(err)) end
    end
    if udp_pairs[w] then
      udp_pairs[w].from:close()
      udp_pairs[w].to:close()
    end
    finished = finished + 1
  end)
end

lunet.spawn(function()
  local ok, err = all:wait(timeout_s * 1000)
  if ok == nil then
    io.stderr:write(("stress: TIMEOUT after %d s: %d of %d workers finished\n"):format(timeout_s, finished, workers))
    os.exit(2, true)
  end
  assert(ok == true, "a worker failed: " .. tostring(err))
end)

lunet.run()
if shared_db then sqlite3.close(shared_db); lunet.run() end
if shared_mysql then mysql.close(shared_mysql); lunet.run() end
if mysql_down then print("stress: MySQL operations skipped, server unreachable: " .. mysql_down) end
if pg_shared then postgres.close(pg_shared); lunet.run() end

local total = 0
local kinds = {}
for k, n in pairs(counts) do total = total + n; kinds[#kinds + 1] = k end
table.sort(kinds)
print(("stress: %d workers x %d ops = %d operations completed, %d failed"):format(workers, ops, total, #failures))
for _, k in ipairs(kinds) do print(("  %-16s %d"):format(k, counts[k])) end
local t = lunet._trace()
if t.enabled then
  print(("  trace: refs taken=%d released=%d resumes=%d stack checks=%d"):format(t.taken, t.released, t.resumes, t.checks))
end
for i = 1, math.min(#failures, 10) do io.stderr:write("  ", failures[i], "\n") end

if #failures > 0 or total ~= workers * ops or finished ~= workers then
  __lunet_exit_code = 1
elseif t.enabled and t.taken ~= t.released then
  io.stderr:write("stress: coroutine reference imbalance after the loop drained\n")
  __lunet_exit_code = 1
else
  print("stress: OK")
end
