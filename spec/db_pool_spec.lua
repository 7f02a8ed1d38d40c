-- driver.pool(config, opts) for every driver, against the real libraries and
-- the local test servers (a server that cannot be reached fails the run):
-- acquire waits (FIFO, timeouts, cancellation), connections reset or closed
-- on release, killed connections detected before hand-out, lifetimes,
-- on_connect, close, bad options, and no leak over 10,000 acquire/release
-- cycles.
local H = require("spec.helper")
local lunet = H.lunet

local DRIVERS = {
  {
    name = "sqlite3",
    mod = require("lunet.sqlite3"),
    config = function() return { path = os.tmpname() .. ".db" } end,
    cleanup = function(cfg)
      for _, s in ipairs({ "", "-wal", "-shm", "-journal" }) do os.remove(cfg.path .. s) end
      os.remove((cfg.path:gsub("%.db$", "")))
    end,
    serial = "INTEGER PRIMARY KEY",
  },
  {
    name = "mysql",
    mod = require("lunet.mysql"),
    config = function()
      return { host = os.getenv("LUNET_DB_HOST") or "127.0.0.1", port = tonumber(os.getenv("LUNET_DB_PORT") or "") or 3306,
        user = os.getenv("LUNET_DB_USER") or "root", password = os.getenv("LUNET_DB_PASS") or "", database = "test" }
    end,
    serial = "INT AUTO_INCREMENT PRIMARY KEY",
    id = "SELECT CONNECTION_ID() AS id",
    kill = function(c, id) return c:exec("KILL " .. id) end,
  },
  {
    name = "postgres",
    mod = require("lunet.postgres"),
    config = function()
      return { host = os.getenv("LUNET_DB_HOST") or "127.0.0.1", port = tonumber(os.getenv("LUNET_DB_PORT") or "") or 5432,
        user = os.getenv("LUNET_DB_USER") or "postgres", password = os.getenv("LUNET_DB_PASS"), database = "postgres" }
    end,
    serial = "SERIAL PRIMARY KEY",
    id = "SELECT pg_backend_pid() AS id",
    kill = function(c, id) return c:query("SELECT pg_terminate_backend(" .. tonumber(id) .. ") AS ok") end,
  },
}

-- Runs `body(cfg, table_name)` with a fresh table (id, v) on the driver's
-- database, dropped afterwards; checks that no connection or wait is left.
local function run(D, body, limit)
  local cfg = D.config()
  H.db_run(D.mod, function()
    local admin = assert(D.mod.open(cfg))
    local t = ("lunet_p_%d_%d"):format(os.time(), math.random(1, 1e9))
    assert(admin:exec(("CREATE TABLE %s(id %s, v VARCHAR(64))"):format(t, D.serial)))
    local ok, err = pcall(body, cfg, t, admin)
    assert(admin:exec("DROP TABLE " .. t))
    admin:close()
    if not ok then error(err, 0) end
  end, limit)
  if D.cleanup then D.cleanup(cfg) end
end

for _, D in ipairs(DRIVERS) do
  local pool = D.mod.pool
  describe("lunet." .. D.name .. ".pool", function()
    it("bad options raise; the same full configuration gives the same pool", function()
      local cfg = D.config()
      for _, bad in ipairs({ { size = 0 }, { size = -1 }, { size = 1.5 }, { size = "2" }, { size = math.huge },
        { size = 2, min_idle = 3 }, { min_idle = -1 }, { idle_timeout = -1 }, { acquire_timeout = "x" },
        { max_lifetime = 0 / 0 }, { on_connect = 1 } }) do
        assert.has_error(function() pool(cfg, bad) end)
      end
      assert.has_error(function() pool(cfg, 5) end)
      local a = pool(cfg, { size = 2 })
      assert.equal(a, pool(cfg, { size = 2 }))
      local other = {}
      for k, v in pairs(cfg) do other[k] = v end
      other.connect_timeout = 3
      local b = pool(other, { size = 2 })
      assert.are_not.equal(a, b)
      assert.are_not.equal(a, pool(cfg, { size = 3 }))
      a:close()
      assert.are_not.equal(a, pool(cfg, { size = 2 })) -- a closed pool is not handed out
      pool(cfg, { size = 2 }):close()
      pool(cfg, { size = 3 }):close()
      b:close()
      if D.cleanup then D.cleanup(cfg) end
    end)

    it("query, exec, with, transaction; connections are reused; stats add up", function()
      run(D, function(cfg, t)
        local p = pool(cfg, { size = 2 })
        local ph = D.name == "postgres" and "$1" or "?"
        for i = 1, 5 do
          local r = assert(p:exec(("INSERT INTO %s(v) VALUES (%s)"):format(t, ph), "v" .. i))
          assert.equal(1, r.affected_rows)
        end
        local rows = assert(p:query(("SELECT count(*) AS n FROM %s WHERE v LIKE %s"):format(t, ph), "v%"))
        assert.equal(5, tonumber(rows[1].n))
        local r, err, code = p:query("SELEC 1")
        assert.is_nil(r)
        assert.is_string(err)
        assert.is_string(code)
        assert.equal(7, p:with(function(c) return tonumber(c:query("SELECT 7 AS n")[1].n) end))
        assert.has_error(function() p:with(function() error("boom") end) end, "boom")
        assert.equal("ok", p:transaction(function(tr)
          tr.exec(("INSERT INTO %s(v) VALUES ('tx')"):format(t))
          return "ok"
        end))
        local none, terr = p:transaction(function(tr)
          tr.exec(("INSERT INTO %s(v) VALUES ('gone')"):format(t))
          return nil, "changed my mind"
        end)
        assert.is_nil(none)
        assert.equal("changed my mind", terr.message)
        rows = assert(p:query("SELECT count(*) AS n FROM " .. t))
        assert.equal(6, tonumber(rows[1].n))
        local s = p:stats()
        assert.equal(1, s.created) -- one at a time: one connection did it all
        assert.equal(1, s.size)
        assert.equal(2, s.max)
        assert.equal(1, s.idle)
        assert.equal(0, s.in_use)
        assert.equal(0, s.waiting)
        assert.is_true(s.reused >= 10)
        assert.is_true(s.cache_hits > 0)
        p:close()
        assert.same({ nil, "pool is closed" }, { p:query("SELECT 1") })
      end)
    end)

    it("acquire waits in FIFO order, honours its timeout and cancellation", function()
      run(D, function(cfg)
        local p = pool(cfg, { size = 1, acquire_timeout = 100 })
        local release = false
        local holder = lunet.spawn(function()
          p:with(function() while not release do lunet.sleep(5) end end)
        end)
        -- Exhausted: the acquire timeout.
        assert.same({ nil, "timeout", "timeout" }, { p:query("SELECT 1 AS x") })
        assert.equal(1, p:stats().timeouts)
        -- A caller's deadline applies too.
        assert.same({ nil, "timeout", "timeout" },
          { lunet.deadline(20, function() return p:with(function() end, 5000) end) })
        local order = {}
        local tasks = {}
        for i = 1, 3 do
          tasks[i] = lunet.spawn(function()
            assert(p:with(function() order[#order + 1] = i; lunet.sleep(1); return true end, 5000))
          end)
        end
        local victim = lunet.spawn(function() p:with(function() order[#order + 1] = "victim" end, 5000) end)
        assert.equal(4, p:stats().waiting)
        victim:cancel()
        assert.same({ false, "cancelled" }, { victim:join() })
        assert.equal(3, p:stats().waiting)
        release = true
        assert.is_true(holder:join())
        for i = 1, 3 do assert.is_true(tasks[i]:join()) end
        assert.same({ 1, 2, 3 }, order)
        local s = p:stats()
        assert.equal(0, s.waiting)
        assert.equal(1, s.created)
        p:close()
      end)
    end)

    it("a connection left in a transaction is rolled back before it is handed on", function()
      run(D, function(cfg, t)
        local p = pool(cfg, { size = 1 })
        p:with(function(c)
          assert(c:exec(D.name == "mysql" and "START TRANSACTION" or "BEGIN"))
          assert(c:exec(("INSERT INTO %s(v) VALUES ('dirty')"):format(t)))
        end)
        p:with(function(c)
          local in_tx = c:_session()
          assert.is_false(in_tx)
          assert.equal(0, tonumber(c:query("SELECT count(*) AS n FROM " .. t)[1].n))
        end)
        assert.equal(1, p:stats().created)
        p:close()
      end)
    end)

    it("on_connect runs once per new connection and can refuse it", function()
      run(D, function(cfg)
        local calls = 0
        local p = pool(cfg, { size = 2, on_connect = function(c)
          calls = calls + 1
          return c:query("SELECT 1 AS x") ~= nil
        end })
        for _ = 1, 5 do assert(p:query("SELECT 1 AS x")) end
        assert.equal(1, calls)
        p:close()
        local q = pool(cfg, { size = 2, on_connect = function() return nil, "not today" end })
        assert.same({ nil, "on_connect: not today" }, { q:query("SELECT 1 AS x") })
        assert.equal(0, q:stats().size)
        q:close()
        local r = pool(cfg, { size = 2, on_connect = function() error("raised") end })
        local _, err = r:query("SELECT 1 AS x")
        assert.matches("on_connect: .*raised", err)
        r:close()
      end)
    end)

    it("max_lifetime and idle_timeout evict connections", function()
      run(D, function(cfg)
        local p = pool(cfg, { size = 2, max_lifetime = 50 })
        assert(p:query("SELECT 1 AS x"))
        lunet.sleep(80)
        assert(p:query("SELECT 1 AS x"))
        local s = p:stats()
        assert.equal(2, s.created)
        assert.equal(1, s.evicted)
        p:close()
        local q = pool(cfg, { size = 2, idle_timeout = 30 })
        assert(q:query("SELECT 1 AS x"))
        lunet.sleep(60)
        assert(q:query("SELECT 1 AS x"))
        assert.equal(1, q:stats().evicted)
        q:close()
      end)
    end)

    it("min_idle connections are opened by the pool and kept through idle_timeout", function()
      run(D, function(cfg)
        local p = pool(cfg, { size = 4, min_idle = 2, idle_timeout = 30 })
        assert.is_true(H.eventually(function() return p:stats().idle == 2 end))
        assert.equal(2, p:stats().created)
        lunet.sleep(60)
        assert(p:query("SELECT 1 AS x"))
        local s = p:stats()
        assert.equal(0, s.evicted)
        assert.equal(2, s.size)
        p:close()
        -- A config table changed afterwards does not change the pool.
        local cfg2 = {}
        for k, v in pairs(cfg) do cfg2[k] = v end
        local q = pool(cfg2, { size = 1 })
        if D.name == "sqlite3" then cfg2.path = "/nonexistent-dir/x.db" else cfg2.port = 1 end
        assert(q:query("SELECT 1 AS x"))
        q:close()
      end)
    end)

    it("close: waiting callers get nil, \"pool is closed\"; connections in use close on release", function()
      run(D, function(cfg)
        local p = pool(cfg, { size = 1 })
        local release = false
        local holder = lunet.spawn(function() p:with(function() while not release do lunet.sleep(5) end end) end)
        local got
        local waiter = lunet.spawn(function() got = { p:query("SELECT 1 AS x") } end)
        assert.equal(1, p:stats().waiting)
        p:close()
        assert.is_true(waiter:join())
        assert.same({ nil, "pool is closed" }, got)
        release = true
        assert.is_true(holder:join())
        assert.equal(0, p:stats().size)
      end)
    end)

    it("nothing leaks over 10,000 acquire/release cycles", function()
      run(D, function(cfg)
        local p = pool(cfg, { size = 4 })
        local n = 0
        local function one() n = n + 1 end
        for _ = 1, 10000 do p:with(one) end
        assert.equal(10000, n)
        local s = p:stats()
        assert.equal(1, s.created)
        assert.equal(9999, s.reused)
        assert.equal(1, s.idle)
        p:close()
      end, 60000)
    end)

    if D.kill then
      it("a connection killed on the server while idle is found out before hand-out", function()
        run(D, function(cfg, _, admin)
          local p = pool(cfg, { size = 2, check_after = 0 })
          local id = p:with(function(c) return c:query(D.id)[1].id end)
          assert(D.kill(admin, id))
          lunet.sleep(50)
          local rows = assert(p:query(D.id))
          assert.are_not.equal(tostring(id), tostring(rows[1].id))
          local s = p:stats()
          assert.equal(1, s.broken)
          assert.equal(2, s.created)
          assert.equal(1, s.size)
          p:close()
        end)
      end)

      it("a connection killed while in use is closed on release, not handed on", function()
        run(D, function(cfg, _, admin)
          local p = pool(cfg, { size = 1, check_after = 60000 })
          local r, err = p:with(function(c)
            assert(D.kill(admin, c:query(D.id)[1].id))
            lunet.sleep(50)
            return c:query("SELECT 1 AS x")
          end)
          assert.is_nil(r)
          assert.is_string(err)
          assert(p:query("SELECT 1 AS x"))
          local s = p:stats()
          assert.equal(1, s.broken)
          assert.equal(2, s.created)
          p:close()
        end)
      end)
    end
  end)
end
