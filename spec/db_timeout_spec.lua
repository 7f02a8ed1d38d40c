-- DB statements whose wait ends early (lunet.deadline, task:cancel) are
-- interrupted on the library or server (sqlite3_interrupt, MySQL KILL QUERY
-- over a side connection, libpq's cancel request), statements queued behind
-- them whose wait ended never run, and the connection stays usable; for each
-- driver, against the local test servers (LUNET_DB_HOST/PORT/USER/PASS as
-- in mysql_spec.lua and postgres_spec.lua; an unreachable server fails the
-- run).
--
-- Times: the long statements take 5 s (mysql, postgres) or about 25 s
-- (sqlite); each check asserts that the follow-up statement is done well
-- before that (< 4 s, generous for a noisy machine) and, where the server
-- can show it, that nothing of the statement is still running there.
local H = require("spec.helper")
local lunet = H.lunet
local eventually = H.eventually

local function first(rows, err)
  assert(rows, err)
  return rows[1]
end

-- `open` of a server driver: the test server, overridable from the environment.
local server = H.db_server

-- `running` of a server driver: whether the server still runs a statement
-- like `pattern` on the connection with id `id`, as seen by `obs`.
local function still_running(sql, pattern)
  return function(obs, id)
    return tonumber(first(obs:query(sql, id, pattern)).n) > 0
  end
end

local DRIVERS = {
  {
    name = "sqlite3",
    mod = require("lunet.sqlite3"),
    open = function(m) return m.open() end,
    long = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT count(*) AS n FROM c",
    -- about a quarter of a second
    short = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) SELECT count(*) AS n FROM c",
    create = "CREATE TABLE t(v INTEGER)",
    insert = "INSERT INTO t(v) VALUES (1)",
    interrupted = "interrupted",
  },
  {
    name = "mysql",
    mod = require("lunet.mysql"),
    open = server(3306, "root", "test"),
    long = "SELECT SLEEP(5) AS s",
    short = "SELECT SLEEP(0.3) AS s",
    create = "CREATE TEMPORARY TABLE t(v INT)",
    insert = "INSERT INTO t(v) VALUES (1)",
    interrupted = "Query execution was interrupted",
    id = function(c) return first(c:query("SELECT CONNECTION_ID() AS id")).id end,
    running = still_running(
      "SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE ?", "SELECT SLEEP%"),
  },
  {
    name = "postgres",
    mod = require("lunet.postgres"),
    open = server(5432, "postgres", "postgres"),
    long = "SELECT pg_sleep(5) AS s",
    short = "SELECT pg_sleep(0.3) AS s",
    create = "CREATE TEMP TABLE t(v int)",
    insert = "INSERT INTO t(v) VALUES (1)",
    interrupted = "canceling statement due to user request",
    id = function(c) return first(c:query("SELECT pg_backend_pid() AS id")).id end,
    running = still_running(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int AND state = 'active' AND query LIKE $2",
      "SELECT pg_sleep%"),
  },
}

-- Runs `body` in H.run and checks that nothing was left behind: no lunet wait
-- (H.run), no connection of the driver, and (debug build) as many coroutine
-- references released as taken.
local function clean_run(D, body)
  collectgarbage("collect")
  local conns, pending, trace = D.mod._connections(), lunet._pending(), lunet._trace()
  H.run(function()
    body()
    collectgarbage("collect")
    assert.is_true(eventually(function() return D.mod._connections() <= conns end, 5000),
      ("%d %s connection(s) left open"):format(D.mod._connections() - conns, D.name))
  end, 20000)
  assert.equal(pending, lunet._pending())
  local now = lunet._trace()
  assert.equal(now.taken - trace.taken, now.released - trace.released)
end

local function open(D)
  local c, err = D.open(D.mod)
  assert(c, ("cannot connect (%s): %s"):format(D.name, tostring(err)))
  return c
end

-- The follow-up statement every check runs on the interrupted connection.
local function follow_up(c)
  assert.equal(1, tonumber(first(c:query("SELECT 1 AS one")).one))
end

-- Runs `stop(c, started)` on a new connection: it runs `D.long` and ends its
-- wait early (`started()` waits until the statement really runs). Then
-- checks that it stopped long before its natural end, on the server too,
-- and that the connection (unless `stop` closed it) runs a follow-up.
local function interrupted(D, stop)
  clean_run(D, function()
    local c = open(D)
    local obs = D.running and open(D)
    local id = D.id and D.id(c)
    local function started()
      if D.running then
        assert.is_true(eventually(function() return D.running(obs, id) end, 3000))
      else
        lunet.sleep(100)
      end
    end
    local t0 = H.now_ms()
    stop(c, started)
    if tostring(c):find("closed", 1, true) == nil then follow_up(c) end
    assert.is_true(H.now_ms() - t0 < 4000, ("follow-up done after %d ms"):format(H.now_ms() - t0))
    if D.running then
      assert.is_false(D.running(obs, id), "the statement still runs on the server")
      obs:close()
    end
    c:close()
  end)
end

for _, D in ipairs(DRIVERS) do
  describe("lunet." .. D.name .. " statements whose wait ends early", function()
    it("under lunet.deadline: nil, \"timeout\"; interrupted; the connection stays usable", function()
      interrupted(D, function(c)
        local t0 = H.now_ms()
        local r, err, code = lunet.deadline(100, function() return c:query(D.long) end)
        assert.is_nil(r)
        assert.equal("timeout", err)
        assert.equal("timeout", code) -- the error code, as for database errors
        assert.is_true(H.now_ms() - t0 >= 50)
      end)
    end)

    it("task:cancel(): raises cancelled in the task; interrupted; the connection stays usable", function()
      interrupted(D, function(c, started)
        local task = lunet.spawn(function() return c:query(D.long) end)
        started() -- really running (not merely queued) before the cancel
        task:cancel()
        assert.same({ false, "cancelled" }, { task:join() })
        assert.equal("cancelled", task:status())
      end)
    end)

    it("a statement queued behind it whose wait ended never runs; one still waited for runs", function()
      clean_run(D, function()
        local c = open(D)
        assert(c:exec(D.create))
        local long, insert, later
        local t0 = H.now_ms()
        local a = lunet.spawn(function()
          long = { lunet.deadline(100, function() return c:query(D.long) end) }
        end)
        local b = lunet.spawn(function()
          insert = { lunet.deadline(50, function() return c:exec(D.insert) end) }
        end)
        local d = lunet.spawn(function() later = { c:query("SELECT 2 AS two") } end)
        assert.is_true(a:join())
        assert.is_true(b:join())
        assert.is_true(d:join())
        assert.same({ nil, "timeout", "timeout" }, long)
        assert.same({ nil, "timeout", "timeout" }, insert)
        assert(later[1], later[2])
        assert.equal(2, tonumber(later[1][1].two))
        assert.is_true(H.now_ms() - t0 < 4000, ("queue moved on after %d ms"):format(H.now_ms() - t0))
        -- The INSERT never ran (not even later, once the queue moved on).
        lunet.sleep(50)
        assert.equal(0, tonumber(first(c:query("SELECT count(*) AS n FROM t")).n))
        follow_up(c)
        c:close()
      end)
    end)

    it("an abandoned statement inside a batch fails alone: the others get their results", function()
      clean_run(D, function()
        local c = open(D)
        local res = {}
        local t0 = H.now_ms()
        -- Busy for a moment, so the next three are queued together and taken as one batch.
        local busy = lunet.spawn(function() return c:query(D.short) end)
        local tasks = {
          lunet.spawn(function() res[1] = { c:query("SELECT 1 AS v") } end),
          lunet.spawn(function() res[2] = { lunet.deadline(600, function() return c:query(D.long) end) } end),
          lunet.spawn(function() res[3] = { c:query("SELECT 3 AS v") } end),
        }
        assert.is_true(busy:join())
        for _, t in ipairs(tasks) do assert.is_true(t:join()) end
        assert.equal(1, tonumber(res[1][1][1].v))
        assert.same({ nil, "timeout", "timeout" }, res[2])
        assert(res[3][1], res[3][2])
        assert.equal(3, tonumber(res[3][1][1].v))
        assert.is_true(H.now_ms() - t0 < 4000, ("done after %d ms"):format(H.now_ms() - t0))
        follow_up(c)
        c:close()
      end)
    end)

    it("close during a running statement interrupts it; the close does not wait for it", function()
      interrupted(D, function(c, started)
        local result
        local task = lunet.spawn(function() result = { c:query(D.long) } end)
        started()
        c:close()
        assert.is_true(task:join())
        assert.is_nil(result[1])
        assert.matches(D.interrupted, result[2], 1, true)
      end)
    end)

    it("many timed-out statements on many connections: nothing left behind", function()
      clean_run(D, function()
        local conns = {}
        for i = 1, 3 do conns[i] = open(D) end
        local tasks = {}
        for round = 1, 3 do
          for i, c in ipairs(conns) do
            tasks[#tasks + 1] = lunet.spawn(function()
              local r, err = lunet.deadline(20 + 10 * i + round, function() return c:query(D.long) end)
              assert.is_nil(r)
              assert.equal("timeout", err)
            end)
            tasks[#tasks + 1] = lunet.spawn(function() return c:query("SELECT 1 AS one") end)
          end
        end
        local t0 = H.now_ms()
        for _, t in ipairs(tasks) do assert.is_true(t:join()) end
        assert.is_true(H.now_ms() - t0 < 8000, ("done after %d ms"):format(H.now_ms() - t0))
        for _, c in ipairs(conns) do follow_up(c); c:close() end
      end)
    end)
  end)
end

describe("lunet.postgres pipelines", function()
  local D = DRIVERS[3]
  it("a pipelined statement whose wait ends is cancelled alone", function()
    clean_run(D, function()
      local c = open(D)
      local obs = open(D)
      local id = D.id(c)
      -- Prepared and cached first: statements with parameters then go in one pipeline.
      assert(c:query("SELECT $1::int AS v", 0))
      assert(c:query("SELECT pg_sleep($1) AS s", 0))
      local res = {}
      local t0 = H.now_ms()
      local busy = lunet.spawn(function() return c:query("SELECT pg_sleep($1) AS s", 0.3) end)
      local tasks = {}
      for i = 1, 6 do
        tasks[#tasks + 1] = lunet.spawn(function()
          if i == 3 then
            res[i] = { lunet.deadline(700, function() return c:query("SELECT pg_sleep($1) AS s", 5) end) }
          else
            res[i] = { c:query("SELECT $1::int AS v", i) }
          end
        end)
      end
      assert.is_true(busy:join())
      for _, t in ipairs(tasks) do assert.is_true(t:join()) end
      for i = 1, 6 do
        if i == 3 then
          assert.same({ nil, "timeout", "timeout" }, res[i])
        else
          assert(res[i][1], res[i][2])
          assert.equal(i, res[i][1][1].v)
        end
      end
      assert.is_true(H.now_ms() - t0 < 4000, ("done after %d ms"):format(H.now_ms() - t0))
      assert.is_false(D.running(obs, id))
      follow_up(c)
      c:close()
      obs:close()
    end)
  end)
end)
