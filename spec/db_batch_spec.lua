-- Driver jobs go through the core's run queue, drained by a few pool jobs,
-- and come back through one done queue (crates/lunet/src/work.rs). These
-- checks hold for each driver against the real libraries and the local test
-- servers: every statement gets its own result however many run at once; a
-- statement whose wait ended while it sat in the run queue never runs; a
-- connection closed with statements queued fails them cleanly; nothing is
-- left behind over many rounds. The run-queue cases use a child process with
-- a thread pool of 2, so that statements really wait in the run queue behind
-- busy drains.
local H = require("spec.helper")
local lunet = H.lunet

local function env(name, default) return os.getenv(name) or default end

local sqlite_file = os.tmpname() .. ".db"

-- `open` as Lua source (for child processes) and as a function.
local DRIVERS = {
  {
    name = "sqlite3",
    open_src = ("require('lunet.sqlite3').open(%q)"):format(sqlite_file),
    echo = "SELECT ? AS v",
    slow = "WITH RECURSIVE q(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM q WHERE x < 100000000) SELECT count(*) AS n FROM q",
    p = "?",
  },
  {
    name = "mysql",
    open_src = ("require('lunet.mysql').open({host = %q, port = %d, user = %q, password = %q, database = 'test'})"):format(
      env("LUNET_DB_HOST", "127.0.0.1"), tonumber(env("LUNET_DB_PORT", "3306")), env("LUNET_DB_USER", "root"),
      env("LUNET_DB_PASS", "")),
    echo = "SELECT ? AS v",
    slow = "SELECT SLEEP(2) AS s",
    p = "?",
  },
  {
    name = "postgres",
    open_src = ("require('lunet.postgres').open({host = %q, port = %d, user = %q, database = 'postgres'})"):format(
      env("LUNET_DB_HOST", "127.0.0.1"), tonumber(env("LUNET_DB_PORT", "5432")), env("LUNET_DB_USER", "postgres")),
    echo = "SELECT $1::text AS v",
    slow = "SELECT pg_sleep(2) AS s",
    p = "$1",
  },
}

for _, D in ipairs(DRIVERS) do
  D.mod = require("lunet." .. D.name)
  D.open = assert(load("return " .. D.open_src))
end

local function open(D)
  local c, err = D.open()
  assert(c, ("cannot connect (%s): %s"):format(D.name, tostring(err)))
  return c
end

-- Runs `body` and checks that no connection, wait or coroutine reference
-- (debug builds) is left behind and that no pool work is still pending.
local function clean_run(D, body, limit)
  collectgarbage("collect")
  local conns, pending, trace = D.mod._connections(), lunet._pending(), lunet._trace()
  H.run(function()
    body()
    collectgarbage("collect")
    assert.is_true(H.eventually(function() return D.mod._connections() <= conns end, 5000),
      ("%d %s connection(s) left open"):format(D.mod._connections() - conns, D.name))
    assert.is_true(H.eventually(function() return lunet.stats().pool_pending == 0 end, 5000),
      "pool work still pending")
  end, limit or 30000)
  assert.equal(pending, lunet._pending())
  local now = lunet._trace()
  assert.equal(now.taken - trace.taken, now.released - trace.released)
end

-- Runs Lua `body` in a child process with a thread pool of 2, as the body
-- of a task, with `open()` (a new connection of `D`, or raise) and
-- `hold_pool()` (keeps both pool threads busy with a slow statement each for
-- about a second; returns a function that says whether they have ended)
-- defined. Returns the exit code, stdout and stderr.
local function child(D, body)
  local source = ([[
    package.cpath = %q .. package.cpath
    local lunet = require("lunet")
    local function open() return assert(%s) end
    local function hold_pool()
      local slow, ended = { open(), open() }, 0
      for i = 1, 2 do
        lunet.spawn(function()
          lunet.deadline(1000, function() return slow[i]:query(%q) end)
          slow[i]:close()
          ended = ended + 1
        end)
      end
      lunet.sleep(200)
      return function() return ended == 2 end
    end
    lunet.spawn(function()
  ]]):format(H.build .. "/?.so;" .. H.build .. "/test/?.so;", D.open_src, D.slow) .. body .. [[
    end)
    lunet.run()
    print("connections", require("lunet.]] .. D.name .. [[")._connections())
  ]]
  local path = H.script(source)
  local rc, out, err = H.sh("UV_THREADPOOL_SIZE=2 timeout -s KILL 60 luajit " .. H.shquote(path))
  os.remove(path)
  return rc, out, err
end

for _, D in ipairs(DRIVERS) do
  describe("lunet." .. D.name .. " batched jobs", function()
    it("many statements from many coroutines on many connections each get their own result", function()
      clean_run(D, function()
        local conns = {}
        for i = 1, 8 do conns[i] = open(D) end
        local wrong, done = {}, 0
        for k = 1, 48 do
          lunet.spawn(function()
            local c = conns[(k - 1) % #conns + 1]
            for i = 1, 40 do
              local want = ("%d:%d"):format(k, i)
              local rows, err = c:query(D.echo, want)
              local got = rows and rows[1] and rows[1].v
              if got ~= want then wrong[#wrong + 1] = ("%s got %s (%s)"):format(want, tostring(got), tostring(err)) end
            end
            done = done + 1
          end)
        end
        assert.is_true(H.eventually(function() return done == 48 end, 25000), "statements did not all finish")
        assert.same({}, wrong)
        for _, c in ipairs(conns) do c:close() end
      end)
    end)

    it("a statement whose wait ended while it sat in the run queue never runs; the rest still do", function()
      -- Both pool threads are busy with slow statements, so the inserts wait
      -- in the core's run queue; those whose deadline passes there never run.
      local rc, out, err = child(D, ([[
        local setup = open()
        local t = "lunet_b_" .. lunet.getpid()
        assert(setup:exec("CREATE TABLE " .. t .. "(v INT)"))
        local conns = {}
        for i = 1, 6 do conns[i] = open() end
        local slow_ended = hold_pool()
        local outcomes, n = {}, 0
        for i = 1, 6 do
          lunet.spawn(function()
            local f = function() return conns[i]:exec("INSERT INTO " .. t .. "(v) VALUES (%s)", i) end
            local ok, e
            if i %% 2 == 0 then ok, e = lunet.deadline(50, f) else ok, e = f() end
            outcomes[i] = ok and "ok" or e
            n = n + 1
          end)
        end
        while n < 6 or not slow_ended() do lunet.sleep(20) end
        local rows = assert(setup:query("SELECT v FROM " .. t .. " ORDER BY v"))
        local vs = {}
        for _, r in ipairs(rows) do vs[#vs + 1] = tostring(r.v) end
        print(table.concat(outcomes, ","), table.concat(vs, ","))
        assert(setup:exec("DROP TABLE " .. t))
        for _, c in ipairs(conns) do c:close() end
        setup:close()
      ]]):format(D.p))
      assert.equal(0, rc, err)
      assert.equal("ok,timeout,ok,timeout,ok,timeout\t1,3,5\nconnections\t0\n", out)
    end)

    it("closing connections with statements queued in the run queue fails those statements, and only those", function()
      local rc, out, err = child(D, ([[
        local doomed, kept = open(), open()
        local slow_ended = hold_pool()
        local outcomes, n = {}, 0
        for i = 1, 8 do
          lunet.spawn(function()
            local c = i <= 4 and doomed or kept
            local rows, e = c:query(%q, tostring(i))
            outcomes[i] = rows and rows[1].v or e
            n = n + 1
          end)
        end
        lunet.sleep(0)
        doomed:close()
        while n < 8 or not slow_ended() do lunet.sleep(20) end
        print(table.concat(outcomes, ","))
        kept:close()
      ]]):format(D.echo))
      assert.equal(0, rc, err)
      local closed = "connection is closed"
      assert.equal(("%s,%s,%s,%s,5,6,7,8\nconnections\t0\n"):format(closed, closed, closed, closed), out)
    end)

    it("nothing is left behind over many rounds of concurrent statements, timeouts and closes", function()
      clean_run(D, function()
        local wrong = {}
        for round = 1, 60 do
          local conns = {}
          for i = 1, 3 do conns[i] = open(D) end
          local left = 12
          for k = 1, 12 do
            lunet.spawn(function()
              local c = conns[(k - 1) % 3 + 1]
              if k % 4 == 0 then
                lunet.deadline(1, function() return c:query(D.echo, "x") end)
              else
                local rows, e = c:query(D.echo, tostring(k))
                if not (rows and rows[1].v == tostring(k) or e == "connection is closed") then
                  wrong[#wrong + 1] = ("round %d, %d: %s"):format(round, k, tostring(e))
                end
              end
              left = left - 1
            end)
          end
          if round % 3 == 0 then conns[1]:close() end
          while left > 0 do lunet.sleep(1) end
          for _, c in ipairs(conns) do c:close() end
        end
        assert.same({}, wrong)
      end, 60000)
    end)
  end)
end

describe("the sqlite3 database file", function()
  it("is removed", function()
    for _, s in ipairs({ "", "-wal", "-shm" }) do os.remove(sqlite_file .. s) end
  end)
end)
