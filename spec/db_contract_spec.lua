-- The shared driver contract, one spec parameterised by driver, against the
-- real libraries and the local test servers (LUNET_DB_HOST/PORT/USER/PASS as
-- in mysql_spec.lua; a server that cannot be reached fails the run, never
-- skips it): error codes as the third value, the statement cache and its
-- counters, the transaction helpers (`require("lunet.<driver>_tx")`).
local H = require("spec.helper")
local lunet = H.lunet
local eventually = H.eventually

local server = H.db_server

-- A name no other run uses (tables shared between connections).
local function unique(prefix)
  return ("%s_%d_%d"):format(prefix, os.time(), math.random(1, 1e9))
end

local sqlite_file

local DRIVERS = {
  {
    name = "sqlite3",
    mod = require("lunet.sqlite3"),
    -- A file database, so that several connections see one database.
    open = function(m)
      sqlite_file = sqlite_file or (os.tmpname() .. ".db")
      return m.open(sqlite_file)
    end,
    p = function() return "?" end,
    slow = "WITH RECURSIVE q(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM q WHERE x < 100000000) SELECT count(*) AS n FROM q",
    serial = "INTEGER PRIMARY KEY",
    syntax = "SQLITE_ERROR",
    unique = "SQLITE_CONSTRAINT_UNIQUE",
    notnull = "SQLITE_CONSTRAINT_NOTNULL",
    -- A deferred constraint that makes COMMIT fail.
    deferred = function(t)
      return ("CREATE TABLE %s_parent(id INTEGER PRIMARY KEY); "
        .. "CREATE TABLE %s_child(pid INTEGER REFERENCES %s_parent(id) DEFERRABLE INITIALLY DEFERRED); "
        .. "PRAGMA foreign_keys = ON"):format(t, t, t),
        ("INSERT INTO %s_child(pid) VALUES (42)"):format(t), "SQLITE_CONSTRAINT_FOREIGNKEY",
        ("DROP TABLE %s_child; DROP TABLE %s_parent"):format(t, t)
    end,
  },
  {
    name = "mysql",
    mod = require("lunet.mysql"),
    open = server(3306, "root", "test"),
    p = function() return "?" end,
    slow = "SELECT SLEEP(5) AS s",
    serial = "INT AUTO_INCREMENT PRIMARY KEY",
    syntax = "1064/42000",
    unique = "1062/23000",
    notnull = "1048/23000",
  },
  {
    name = "postgres",
    mod = require("lunet.postgres"),
    open = server(5432, "postgres", "postgres"),
    p = function(i) return "$" .. i end,
    slow = "SELECT pg_sleep(5) AS s",
    serial = "SERIAL PRIMARY KEY",
    syntax = "42601",
    unique = "23505",
    notnull = "23502",
    deferred = function(t)
      return ("CREATE TABLE %s_parent(id int PRIMARY KEY); "
        .. "CREATE TABLE %s_child(pid int REFERENCES %s_parent(id) DEFERRABLE INITIALLY DEFERRED)"):format(t, t, t),
        ("INSERT INTO %s_child(pid) VALUES (42)"):format(t), "23503",
        ("DROP TABLE %s_child; DROP TABLE %s_parent"):format(t, t)
    end,
  },
}

local function open(D)
  local c, err = D.open(D.mod)
  assert(c, ("cannot connect (%s): %s"):format(D.name, tostring(err)))
  return c
end

-- Runs `body(c, t)` with a new connection and a fresh table `t`
-- (id serial, v text NOT NULL UNIQUE), dropped afterwards; checks that no
-- connection and no wait is left behind.
local function with_table(D, body, limit)
  H.db_run(D.mod, function()
    local c = open(D)
    local t = unique("lunet_c")
    assert(c:exec(("CREATE TABLE %s(id %s, v VARCHAR(64) NOT NULL UNIQUE)"):format(t, D.serial)))
    local ok, err = pcall(body, c, t)
    if tostring(c):find("closed", 1, true) then c = open(D) end
    assert(c:exec("DROP TABLE " .. t))
    c:close()
    if not ok then error(err, 0) end
  end, limit)
end

local function count(c, t)
  local rows = assert(c:query("SELECT count(*) AS n FROM " .. t))
  return tonumber(rows[1].n)
end

for _, D in ipairs(DRIVERS) do
  local P = D.p
  describe("lunet." .. D.name .. " error codes", function()
    it("a failed statement returns nil, message, code (both protocols)", function()
      with_table(D, function(c, t)
        local r, err, code = c:query("SELEC 1")
        assert.is_nil(r)
        assert.is_string(err)
        assert.equal(D.syntax, code)
        assert(c:exec(("INSERT INTO %s(v) VALUES (%s)"):format(t, P(1)), "a"))
        r, err, code = c:exec(("INSERT INTO %s(v) VALUES (%s)"):format(t, P(1)), "a")
        assert.is_nil(r)
        assert.equal(D.unique, code, err)
        r, err, code = c:exec(("INSERT INTO %s(v) VALUES ('a')"):format(t))
        assert.equal(D.unique, code, err)
        r, err, code = c:exec(("INSERT INTO %s(v) VALUES (%s)"):format(t, P(1)), nil)
        assert.equal(D.notnull, code, err)
        -- Our own checks have a message and no code.
        r, err, code = c:query(("SELECT %s AS a"):format(P(1)), 1, 2)
        assert.is_nil(r)
        assert.matches("^parameter count mismatch", err)
        assert.is_nil(code)
        -- A closed connection: no code either.
        local d = open(D)
        d:close()
        r, err, code = d:query("SELECT 1 AS x")
        assert.same({ nil, "connection is closed" }, { r, err, code })
      end)
    end)

    it("a statement cut short by a deadline returns nil, \"timeout\", \"timeout\"", function()
      with_table(D, function(c)
        local slow = D.slow
        assert.same({ nil, "timeout", "timeout" }, { lunet.deadline(50, function() return c:query(slow) end) })
        assert.equal(1, tonumber(c:query("SELECT 1 AS x")[1].x))
      end)
    end)
  end)

  describe("lunet." .. D.name .. " loading", function()
    -- Changes a field of the core's ABI table (uint32 number `field`: 0 the
    -- version, 1 the size) by `delta`, then requires the driver.
    local function load_with(field, delta)
      return H.luajit(([[
        require("lunet")
        local p = require("ffi").cast("uint32_t *", debug.getregistry()["lunet.abi"])
        p[%d] = p[%d] + %d
        local ok, e = pcall(require, "lunet.%s")
        io.stderr:write(tostring(e))
        os.exit(ok and 0 or 3)
      ]]):format(field, field, delta, D.name))
    end

    it("refuses to load when the core has another ABI version", function()
      local rc, _, err = load_with(0, 7)
      assert.equal(3, rc)
      assert.matches("ABI version 8 does not match the version 1", err, 1, true)
    end)

    it("refuses to load, saying so, when the core is older (its ABI table is shorter)", function()
      local rc, _, err = load_with(1, -8)
      assert.equal(3, rc)
      assert.matches("the lunet core is older than this driver", err, 1, true)
    end)
  end)

  describe("lunet." .. D.name .. " wrong arguments", function()
    it("raise for values that cannot be bound, a missing or wrong connection or SQL", function()
      local db, n = D.mod, D.name
      H.db_run(db, function()
        local c = open(D)
        for _, bad in ipairs({ {}, function() end, coroutine.create(function() end), io.stdout }) do
          local ok, err = pcall(db.query, c, ("SELECT %s"):format(P(1)), bad)
          assert.is_false(ok)
          assert.matches("parameter 1 must be nil, boolean, number or string", err, 1, true)
        end
        local function expected(i, fname, what, got)
          return ("bad argument #%d to '%s.%s' (%s expected, got %s)"):format(i, n, fname, what, got)
        end
        local conn_t = n .. " connection"
        local cases = {
          { expected(1, "query", conn_t, "no value"), db.query, 0 },
          { expected(1, "query", conn_t, "nil"), db.query, 2, nil, "SELECT 1" },
          { expected(1, "exec", conn_t, "string"), db.exec, 1, "SELECT 1" },
          { expected(1, "query", conn_t, "userdata"), db.query, 2, io.stdout, "SELECT 1" },
          { expected(2, "query", "string", "no value"), db.query, 1, c },
          { expected(2, "exec", "string", "table"), db.exec, 2, c, {} },
          { expected(2, "query_params", "string", "number"), db.query_params, 2, c, 1 },
          { expected(1, "close", conn_t, "number"), db.close, 1, 5 },
          { expected(1, "stats", conn_t, "nil"), db.stats, 1, nil },
        }
        for _, case in ipairs(cases) do
          local ok, err = pcall(case[2], unpack(case, 4, 3 + case[3]))
          assert.is_false(ok)
          assert.matches(case[1], err, 1, true)
        end
        -- A connection of another driver is not one of this driver's.
        local other = DRIVERS[D.name == "sqlite3" and 3 or 1]
        local s = open(other)
        local ok, err = pcall(db.query, s, "SELECT 1")
        assert.is_false(ok)
        assert.matches(conn_t .. " expected", err, 1, true)
        s:close()
        -- The connection is unaffected.
        assert.equal(1, tonumber(db.query(c, "SELECT 1 AS x")[1].x))
        db.close(c)
      end)
    end)
  end)

  describe("lunet." .. D.name .. " close and escape", function()
    it("close is idempotent; later statements return 'connection is closed'", function()
      local db = D.mod
      H.db_run(db, function()
        local c = open(D)
        assert.is_nil(db.close(c))
        assert.is_nil(db.close(c))
        c:close()
        for _, f in ipairs({ db.query, db.exec, db.query_params, db.exec_params }) do
          assert.same({ nil, "connection is closed" }, { f(c, "SELECT 1") })
        end
        -- Argument checks still come first.
        assert.is_false(pcall(db.query, c, 42))
      end)
    end)

    it("escape raises for a missing or non-string argument", function()
      local db = D.mod
      for _, args in ipairs({ {}, { nil }, { {} }, { true } }) do
        local ok, err = pcall(db.escape, unpack(args))
        assert.is_false(ok)
        assert.matches(("bad argument #1 to '%s.escape' (string expected"):format(D.name), err, 1, true)
      end
      H.db_run(db, function()
        local c = open(D)
        local ok, err = pcall(db.escape, c)
        assert.is_false(ok)
        assert.matches(("bad argument #2 to '%s.escape' (string expected, got no value)"):format(D.name), err, 1, true)
        db.close(c)
      end)
    end)
  end)

  describe("lunet." .. D.name .. " process exit", function()
    it("lets the process exit cleanly with a statement running and connections open", function()
      local env = os.getenv
      local config = ({
        sqlite3 = "nil",
        mysql = ("{ host = %q, port = %d, user = %q, password = %q, database = 'test' }"):format(
          env("LUNET_DB_HOST") or "127.0.0.1", tonumber(env("LUNET_DB_PORT") or "") or 3306,
          env("LUNET_DB_USER") or "root", env("LUNET_DB_PASS") or ""),
        postgres = ("{ host = %q, port = %d, user = %q, password = %s, database = 'postgres' }"):format(
          env("LUNET_DB_HOST") or "127.0.0.1", tonumber(env("LUNET_DB_PORT") or "") or 5432,
          env("LUNET_DB_USER") or "postgres", env("LUNET_DB_PASS") and ("%q"):format(env("LUNET_DB_PASS")) or "nil"),
      })[D.name]
      local rc, out, err = H.luajit(([[
        local lunet, db = require("lunet"), require("lunet.%s")
        local config = %s
        lunet.spawn(function()
          local c = assert(db.open(config))
          db.query(c, %q)
        end)
        lunet.spawn(function()
          local keep = assert(db.open(config))
          lunet.sleep(100)
          print("exiting")
          os.exit(0, true)
        end)
        lunet.run()
      ]]):format(D.name, config, D.slow))
      assert.equal(0, rc, err)
      assert.equal("exiting\n", out)
    end)
  end)

  describe("lunet." .. D.name .. " whatever it is given", function()
    it("never crash, whatever is passed to any function in any order", function()
      local db = D.mod
      local calls, raised, returned = 0, 0, 0
      H.db_run(db, function()
        local open_conn, closed_conn = open(D), open(D)
        db.close(closed_conn)
        -- pool[0] is nil.
        local pool = { 0, -1.5, "SELECT 1", "x\0y", "", true, {}, function() end, io.stdout,
          coroutine.create(function() end), open_conn, closed_conn, ("z"):rep(100000) }
        local n = 13
        local names = { "open", "query", "exec", "query_params", "exec_params", "escape", "close", "stats" }
        -- open() with a string: SQLite would create that file (only the
        -- failing ones are tried), a server driver would look it up as a host.
        local function skip(name, v)
          if name == "close" and v == open_conn then return true end
          if name ~= "open" or type(v) ~= "string" then return false end
          return D.name ~= "sqlite3" or (v ~= "x\0y" and #v < 1000)
        end
        for _, name in ipairs(names) do
          for a = 0, n do
            for b = 0, n, 3 do
              if not skip(name, pool[a]) then
                calls = calls + 1
                local res = { pcall(db[name], pool[a], pool[b], pool[(a + b) % (n + 1)]) }
                if not res[1] then
                  raised = raised + 1
                  assert.equal("string", type(res[2]))
                else
                  returned = returned + 1
                  if res[2] == nil and res[3] ~= nil then assert.equal("string", type(res[3])) end
                  if res[2] == nil and res[4] ~= nil then assert.equal("string", type(res[4])) end
                  if getmetatable(res[2]) == getmetatable(open_conn) and res[2] ~= open_conn then db.close(res[2]) end
                end
              end
            end
          end
        end
        -- The connection still works after all that.
        assert.equal(1, tonumber(db.query(open_conn, "SELECT 1 AS x")[1].x))
        db.close(open_conn)
      end, 60000)
      assert.is_true(calls > 300 and raised > 0 and returned > 0, ("%d calls, %d raised, %d returned"):format(calls, raised, returned))
    end)
  end)

  describe("lunet." .. D.name .. " statement cache", function()
    it("counts hits and misses and stays within its bound (conn:stats())", function()
      with_table(D, function(c, t)
        local base = c:stats()
        assert.is_true(base.cache_capacity > 0)
        local sql = ("SELECT v FROM %s WHERE id = %s"):format(t, P(1))
        for i = 1, 5 do assert(c:query(sql, i)) end
        local s = c:stats()
        assert.equal(base.cache_misses + 1, s.cache_misses)
        assert.equal(base.cache_hits + 4, s.cache_hits)
        for i = 1, s.cache_capacity + 5 do
          assert(c:query(("SELECT %d AS n, v FROM %s WHERE id = %s"):format(i, t, P(1)), i))
        end
        s = c:stats()
        assert.equal(s.cache_capacity, s.cache_size)
        assert.is_true(s.cache_evictions >= 5)
        -- The first statement was evicted: a miss again, and it still works.
        assert(c:query(sql, 1))
        assert.equal(s.cache_misses + 1, c:stats().cache_misses)
        c:close()
        assert.same(0, c:stats().cache_size)
      end, 60000)
    end)
  end)

  describe("lunet." .. D.name .. "_tx", function()
    local tx = require("lunet." .. D.name .. "_tx")

    it("commits when fn returns a non-nil first value, returning fn's two results", function()
      with_table(D, function(c, t)
        local a, b = tx.transaction(c, function(tr)
          local r = tr.exec(("INSERT INTO %s(v) VALUES (%s)"):format(t, P(1)), "x")
          assert.equal(1, r.affected_rows)
          assert.equal("x", tr.query_row(("SELECT v FROM %s WHERE v = %s"):format(t, P(1)), "x").v)
          assert.is_nil(tr.query_row(("SELECT v FROM %s WHERE v = %s"):format(t, P(1)), "none"))
          assert.equal(1, #tr.query("SELECT v FROM " .. t))
          return "done", 7
        end)
        assert.same({ "done", 7 }, { a, b })
        assert.equal(1, count(c, t))
      end)
    end)

    it("rolls back on nil, on a raised error (any value) and on a failed statement", function()
      with_table(D, function(c, t)
        local ins = ("INSERT INTO %s(v) VALUES (%s)"):format(t, P(1))
        local r, err = tx.transaction(c, function(tr) tr.exec(ins, "a"); return nil, "version conflict" end)
        assert.is_nil(r)
        assert.equal("version conflict", err.message)
        assert.equal("version conflict", tostring(err))
        assert.is_false(err.poisoned)
        assert.equal(0, count(c, t))
        r, err = tx.transaction(c, function(tr) tr.exec(ins, "b"); error({ why = 1 }) end)
        assert.is_nil(r)
        assert.matches("^table: ", err.message)
        assert.equal(0, count(c, t))
        r, err = tx.transaction(c, function(tr) tr.exec(ins, "c"); tr.exec(ins, "c"); return true end)
        assert.is_nil(r)
        assert.equal(D.unique, err.code)
        assert.is_false(err.poisoned)
        assert.equal("e: " .. err.message, "e: " .. err)
        assert.equal(0, count(c, t))
        r, err = tx.transaction(c, function() return nil end)
        assert.equal("transaction aborted", err.message)
        -- The connection is clean afterwards: a statement outside commits at once.
        assert(c:exec(ins, "after"))
        assert.equal(1, count(c, t))
      end)
    end)

    it("nested calls use savepoints: an inner rollback keeps the outer work", function()
      with_table(D, function(c, t)
        local ins = ("INSERT INTO %s(v) VALUES (%s)"):format(t, P(1))
        local r = tx.transaction(c, function(tr)
          tr.exec(ins, "outer")
          local inner, err = tx.transaction(c, function(tr2) tr2.exec(ins, "inner"); return nil, "no" end)
          assert.is_nil(inner)
          assert.equal("no", err.message)
          local kept = tx.transaction(c, function(tr2) tr2.exec(ins, "inner2"); return true end)
          assert.is_true(kept)
          return true
        end)
        assert.is_true(r)
        local rows = assert(c:query(("SELECT v FROM %s ORDER BY v"):format(t)))
        assert.same({ "inner2", "outer" }, { rows[1].v, rows[2].v })
        -- An outer rollback undoes the released savepoint too.
        tx.transaction(c, function(tr)
          tx.transaction(c, function(tr2) tr2.exec(ins, "gone"); return true end)
          return nil
        end)
        assert.equal(2, count(c, t))
      end)
    end)

    it("bad arguments: nil, err (never a raise); a bad mode is refused before BEGIN", function()
      with_table(D, function(c)
        local r, err = tx.transaction(nil, function() return true end)
        assert.is_nil(r)
        assert.equal("transaction requires a connection", err.message)
        r, err = tx.transaction(c, "not a function")
        assert.equal("transaction requires a function", err.message)
        r, err = tx.transaction(c, function() return true end, "SOMETIMES")
        assert.is_nil(r)
        assert.matches("^invalid transaction mode: SOMETIMES", err.message)
        assert.is_false(err.poisoned)
        local mode = D.name == "sqlite3" and "IMMEDIATE" or "SERIALIZABLE"
        assert.equal(5, tx.transaction(c, function(tr) return tr.query_row("SELECT 5 AS n").n end, mode))
      end)
    end)

    it("a timeout inside the body rolls back; the connection is usable afterwards", function()
      with_table(D, function(c, t)
        local ins = ("INSERT INTO %s(v) VALUES (%s)"):format(t, P(1))
        local slow = D.slow
        local r, err = lunet.deadline(200, function()
          return tx.transaction(c, function(tr)
            tr.exec(ins, "doomed")
            tr.query(slow)
            return true
          end)
        end)
        assert.is_nil(r)
        assert.equal("timeout", err.message)
        assert.equal("timeout", err.code)
        -- The ROLLBACK ran in a task of its own, queued before this statement.
        assert.equal(0, count(c, t))
        assert(c:exec(ins, "fine"))
        assert.equal(1, count(c, t))
      end)
    end)

    it("a cancelled task rolls back and stays cancelled", function()
      with_table(D, function(c, t)
        local ins = ("INSERT INTO %s(v) VALUES (%s)"):format(t, P(1))
        local entered = false
        local task = lunet.spawn(function()
          return tx.transaction(c, function(tr)
            tr.exec(ins, "doomed")
            entered = true
            lunet.sleep(60000) -- a body that yields for a long time
            return true
          end)
        end)
        assert.is_true(eventually(function() return entered end))
        task:cancel()
        assert.same({ false, "cancelled" }, { task:join() })
        assert.equal(0, count(c, t))
        assert(c:exec(ins, "fine"))
        assert.equal(1, count(c, t))
      end)
    end)

    if D.deferred then
      it("a COMMIT that fails (deferred constraint) returns its error and leaves the connection clean", function()
        with_table(D, function(c, t)
          local create, bad, code, drop = D.deferred(t)
          assert(c:exec(create))
          local r, err = tx.transaction(c, function(tr) tr.exec(bad); return true end)
          assert.is_nil(r)
          assert.equal(code, err.code, err.message)
          assert.is_false(err.poisoned)
          assert.equal(0, tonumber(c:query(("SELECT count(*) AS n FROM %s_child"):format(t))[1].n))
          assert(c:exec(drop))
        end)
      end)
    end
  end)
end

describe("the sqlite3 database file", function()
  it("is removed", function()
    for _, suffix in ipairs({ "", "-wal", "-shm", "-journal" }) do
      os.remove(sqlite_file .. suffix)
    end
    os.remove((sqlite_file:gsub("%.db$", "")))
  end)
end)
