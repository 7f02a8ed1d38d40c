-- lunet.sqlite3: the database API contract on SQLite, run from coroutines on
-- the loop (H.run), plus loading and lifetime checks in subprocesses. Cases
-- that are the same for every driver are in db_contract_spec.lua.
local H = require("spec.helper")
local lunet = H.lunet
local db = require("lunet.sqlite3")

-- A fresh in-memory connection (inside H.run).
local function mem()
  local conn, err = db.open()
  assert(conn, err)
  return conn
end

local function remove_db(path)
  for _, suffix in ipairs({ "", "-wal", "-shm", "-journal" }) do os.remove(path .. suffix) end
end

local eventually = H.eventually

describe("lunet.sqlite3", function()
  describe("loading", function()
    it("exposes the driver API, with the aliases", function()
      for _, name in ipairs({ "open", "query", "exec", "query_params", "exec_params", "escape", "close" }) do
        assert.equal("function", type(db[name]), name)
      end
    end)

    it("loads the core itself when required without require('lunet')", function()
      local rc, out, err = H.luajit([[
        local db = require("lunet.sqlite3")
        assert(package.loaded.lunet, "core not loaded")
        package.loaded.lunet.spawn(function()
          local c = assert(db.open())
          local rows = assert(db.query(c, "SELECT 6 * 7 AS answer"))
          print(rows[1].answer)
          db.close(c)
        end)
        package.loaded.lunet.run()
      ]])
      assert.equal(0, rc, err)
      assert.equal("42\n", out)
    end)

    it("is found by lunet-run", function()
      local rc, out, err = H.lunet_run([[
        local db = require("lunet.sqlite3")
        require("lunet").spawn(function()
          local c = assert(db.open({ path = ":memory:" }))
          print(assert(db.query(c, "SELECT 'hi' AS s"))[1].s)
        end)
      ]])
      assert.equal(0, rc, err)
      assert.equal("hi\n", out)
    end)

    it("refuses to load, clearly, when the core cannot be found", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute(("mkdir -p %s/lunet && cp %s/lunet/sqlite3.so %s/lunet/"):format(dir, H.build, dir)) == 0)
      local rc, _, err = H.sh(("cd %s && luajit -e %s"):format(dir, H.shquote(
        [[package.cpath = "./?.so"; local ok, e = pcall(require, "lunet.sqlite3"); io.stderr:write(tostring(e)); os.exit(ok and 0 or 3)]])))
      os.execute("rm -rf " .. dir)
      assert.equal(3, rc)
      assert.matches("lunet core module is not loaded", err, 1, true)
    end)
  end)

  describe("yield guard", function()
    it("raises outside a coroutine, before doing anything", function()
      local ok, err = pcall(db.open)
      assert.is_false(ok)
      assert.equal("sqlite3.open must be called from coroutine", err)
      ok, err = pcall(db.query, nil, "SELECT 1")
      assert.equal("sqlite3.query must be called from coroutine", err)
      ok, err = pcall(db.exec_params, nil, "SELECT 1")
      assert.equal("sqlite3.exec_params must be called from coroutine", err)
    end)

    it("raises where a yield is impossible", function()
      local err
      H.run(function()
        local c = mem()
        local t = { 2, 1 }
        local ok
        ok, err = pcall(table.sort, t, function(a, b) db.query(c, "SELECT 1"); return a < b end)
        assert.is_false(ok)
        db.close(c)
      end)
      assert.matches("sqlite3.query called in non-yieldable context", err, 1, true)
    end)
  end)

  describe("open", function()
    it("accepts a params table, a path string, or nothing (in-memory)", function()
      H.run(function()
        for _, arg in ipairs({ { path = ":memory:" }, ":memory:", {}, { path = ":memory:", unknown = 1 } }) do
          local c, err = db.open(arg)
          assert.is_nil(err)
          assert.equal("userdata", type(c))
          assert.matches("^sqlite3 connection %(0x%x+%)$", tostring(c))
          db.close(c)
          assert.equal("sqlite3 connection (closed)", tostring(c))
        end
        local c = assert(db.open())
        assert.equal(1, db.query(c, "SELECT 1 AS one")[1].one)
        db.close(c)
      end)
    end)

    it("returns nil, err for a database that cannot be opened", function()
      H.run(function()
        local c, err = db.open({ path = "/nonexistent-dir/sub/x.db" })
        assert.is_nil(c)
        assert.matches("unable to open database file", err, 1, true)
        c, err = db.open("bad\0path.db")
        assert.is_nil(c)
        assert.equal("string", type(err))
      end)
    end)

    it("raises for params that are neither a table nor a string", function()
      H.run(function()
        for _, bad in ipairs({ 42, true, function() end }) do
          local ok, err = pcall(db.open, bad)
          assert.is_false(ok)
          assert.matches("bad argument #1 to 'sqlite3.open' (table or string expected", err, 1, true)
        end
        local ok, err = pcall(db.open, { path = 7 })
        assert.is_false(ok)
        assert.matches("field 'path' must be a string", err, 1, true)
      end)
    end)

    for _, how in ipairs({ "raises", "yields" }) do
      it("a db.open table whose __index " .. how .. " does not abort the process", function()
        H.check_trapped_open("lunet.sqlite3", "{}", how)
      end)
    end

    it("keeps a file database across close and reopen", function()
      local path = os.tmpname() .. ".db"
      H.run(function()
        local c = assert(db.open({ path = path }))
        assert(db.exec(c, "CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT)"))
        assert(db.exec(c, "INSERT INTO kv VALUES (?, ?)", "color", "teal"))
        db.close(c)
        -- Let the background close finish before reopening.
        assert.is_true(eventually(function() return db._connections() == 0 end))
        local c2 = assert(db.open(path))
        local rows = assert(db.query(c2, "SELECT v FROM kv WHERE k = ?", "color"))
        assert.same({ { v = "teal" } }, rows)
        db.close(c2)
      end)
      local f = io.open(path, "rb")
      assert.is_not_nil(f, "database file missing")
      assert.equal("SQLite format 3\0", f:read(16))
      f:close()
      remove_db(path)
    end)
  end)

  describe("query", function()
    it("returns an array of rows keyed by column name, NULL as an absent key", function()
      local rows
      H.run(function()
        local c = mem()
        assert(db.exec(c, [[
          CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT, email TEXT);
          INSERT INTO people(name, email) VALUES ('ann', 'ann@example.org'), ('bob', NULL);
        ]]))
        rows = assert(db.query(c, "SELECT id, name, email FROM people ORDER BY id"))
        db.close(c)
      end)
      assert.same({ { id = 1, name = "ann", email = "ann@example.org" }, { id = 2, name = "bob" } }, rows)
      assert.is_nil(rows[2].email)
    end)

    it("types every value by itself, not by column or first row", function()
      local rows
      H.run(function()
        local c = mem()
        assert(db.exec(c, "CREATE TABLE mixed(v)"))
        for _, v in ipairs({ 7, 2.5, "text" }) do assert(db.exec(c, "INSERT INTO mixed VALUES (?)", v)) end
        assert(db.exec(c, "INSERT INTO mixed VALUES (x'0001ff')"))
        assert(db.exec(c, "INSERT INTO mixed VALUES (NULL)"))
        rows = assert(db.query(c, "SELECT v FROM mixed ORDER BY rowid"))
        db.close(c)
      end)
      assert.equal(5, #rows)
      assert.equal(7, rows[1].v)
      assert.equal(2.5, rows[2].v)
      assert.equal("text", rows[3].v)
      assert.equal("\0\1\255", rows[4].v)
      assert.same({}, rows[5])
    end)

    it("returns an empty array when nothing matches, and every row of big results", function()
      H.run(function()
        local c = mem()
        assert.same({}, assert(db.query(c, "SELECT 1 AS x WHERE 0")))
        local rows = assert(db.query(c, [[
          WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000)
          SELECT x, NULL AS absent FROM n]]))
        assert.equal(100000, #rows)
        for i = 1, #rows, 997 do assert.equal(i, rows[i].x) end
        assert.equal(100000, rows[100000].x)
        assert.is_nil(rows[1].absent)
        db.close(c)
      end)
    end)

    it("returns nil and SQLite's full message on SQL errors", function()
      H.run(function()
        local c = mem()
        local rows, err = db.query(c, "SELECT * FROM no_such_table")
        assert.is_nil(rows)
        assert.equal("no such table: no_such_table", err)
        rows, err = db.query(c, "SELEKT 1")
        assert.is_nil(rows)
        assert.equal('near "SELEKT": syntax error', err)
        assert(db.exec(c, "CREATE TABLE u(x UNIQUE)"))
        assert(db.exec(c, "INSERT INTO u VALUES (1)"))
        local r
        r, err = db.exec(c, "INSERT INTO u VALUES (1)")
        assert.is_nil(r)
        assert.equal("UNIQUE constraint failed: u.x", err)
        -- The connection is still usable afterwards.
        assert.equal(1, db.query(c, "SELECT count(*) AS n FROM u")[1].n)
        db.close(c)
      end)
    end)

    it("empty SQL gives what blank SQL gives (no rows, nothing changed)", function()
      local rc, results, err = H.empty_sql("lunet.sqlite3", "{}")
      assert.equal(0, rc, err)
      assert.same(H.EMPTY_SQL_DOES_NOTHING, results)
    end)

    it("takes exactly one statement", function()
      H.run(function()
        local c = mem()
        local rows, err = db.query(c, "SELECT 1; SELECT 2")
        assert.is_nil(rows)
        assert.matches("more than one SQL statement", err, 1, true)
        db.close(c)
      end)
    end)
  end)

  describe("parameters", function()
    it("binds nil, booleans, integers, doubles and strings natively", function()
      local row
      H.run(function()
        local c = mem()
        row = assert(db.query(c, [[SELECT ? AS n, ? AS t, ? AS f, ? AS i, ? AS d, ? AS s,
          typeof(?1) AS tn, typeof(?2) AS tt, typeof(?4) AS ti, typeof(?5) AS td, typeof(?6) AS ts]],
          nil, true, false, 42, 0.1, "str"))[1]
        db.close(c)
      end)
      assert.is_nil(row.n)
      assert.equal(1, row.t)
      assert.equal(0, row.f)
      assert.equal(42, row.i)
      assert.equal(0.1, row.d)
      assert.equal("str", row.s)
      assert.same({ "null", "integer", "integer", "real", "text" }, { row.tn, row.tt, row.ti, row.td, row.ts })
    end)

    it("keeps integers exact up to 2^53 and doubles at full precision", function()
      H.run(function()
        local c = mem()
        assert(db.exec(c, "CREATE TABLE nums(i INTEGER, r REAL)"))
        local values = { 2 ^ 53, -(2 ^ 53), 2 ^ 53 - 1, 0, -1, 1e15 + 1 }
        for _, v in ipairs(values) do assert(db.exec(c, "INSERT INTO nums(i) VALUES (?)", v)) end
        local rows = assert(db.query(c, "SELECT i, typeof(i) AS t FROM nums ORDER BY rowid"))
        for k, v in ipairs(values) do
          assert.equal(v, rows[k].i)
          assert.equal("integer", rows[k].t)
        end
        -- Beyond what a double holds exactly, SQLite's own integer arithmetic still is exact.
        assert.equal(1, db.query(c, "SELECT ? - 9007199254740991 AS d", 2 ^ 53 - 1 + 1)[1].d)
        for _, v in ipairs({ math.pi, 0.1 + 0.2, 1 / 3, -1.5e-300, 1.7976931348623157e308 }) do
          assert(db.exec(c, "INSERT INTO nums(r) VALUES (?)", v))
          local got = db.query(c, "SELECT r FROM nums WHERE rowid = last_insert_rowid()")[1].r
          assert.equal(v, got)
        end
        db.close(c)
      end)
    end)

    it("passes every byte of a string, NULs and invalid UTF-8 included", function()
      H.run(function()
        local c = mem()
        assert(db.exec(c, "CREATE TABLE b(v)"))
        local weird = "a\0b\255\254\0" .. ("\0"):rep(10)
        assert(db.exec(c, "INSERT INTO b VALUES (?)", weird))
        local row = db.query(c, "SELECT v, length(CAST(v AS BLOB)) AS n FROM b")[1]
        assert.equal(weird, row.v)
        assert.equal(#weird, row.n)
        -- Strings compare as text, so lookups by a string parameter work.
        assert(db.exec(c, "INSERT INTO b VALUES ('plain')"))
        assert.equal(1, #db.query(c, "SELECT v FROM b WHERE v = ?", "plain"))
        -- A large value, both ways.
        local big = ("0123456789abcdef"):rep(256 * 1024) -- 4 MiB
        assert.equal(#big, db.query(c, "SELECT length(?) AS n", big)[1].n)
        assert.equal(big, db.query(c, "SELECT ? AS v", big)[1].v)
        db.close(c)
      end)
    end)

    it("reports a parameter count mismatch both ways, for query and exec", function()
      H.run(function()
        local c = mem()
        assert(db.exec(c, "CREATE TABLE t(a, b)"))
        local cases = {
          { db.query, "SELECT ?, ?", { 1 } },
          { db.query, "SELECT ?", { 1, 2 } },
          { db.query, "SELECT 1", { nil } },
          { db.exec, "INSERT INTO t VALUES (?, ?)", { 1, 2, 3 } },
          { db.exec, "INSERT INTO t VALUES (?, ?)", { 1 } },
        }
        for _, case in ipairs(cases) do
          local r, err = case[1](c, case[2], unpack(case[3], 1, table.maxn(case[3]) > 0 and table.maxn(case[3]) or 1))
          assert.is_nil(r)
          assert.matches("^parameter count mismatch: ", err)
        end
        assert.equal(0, db.query(c, "SELECT count(*) AS n FROM t")[1].n)
        db.close(c)
      end)
    end)

  end)

  describe("exec", function()
    it("reports affected rows and the last insert id", function()
      H.run(function()
        local c = mem()
        local r = assert(db.exec(c, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)"))
        assert.same({ affected_rows = 0, last_insert_id = 0 }, r)
        r = assert(db.exec(c, "INSERT INTO t(v) VALUES (?)", 10))
        assert.same({ affected_rows = 1, last_insert_id = 1 }, r)
        r = assert(db.exec(c, "INSERT INTO t(v) VALUES (20), (30), (40)"))
        assert.same({ affected_rows = 3, last_insert_id = 4 }, r)
        r = assert(db.exec(c, "UPDATE t SET v = v + 1 WHERE v >= ?", 20))
        assert.equal(3, r.affected_rows)
        r = assert(db.exec(c, "DELETE FROM t WHERE v > 1000"))
        assert.equal(0, r.affected_rows)
        r = assert(db.exec(c, "DELETE FROM t"))
        assert.equal(4, r.affected_rows)
        db.close(c)
      end)
    end)

    it("runs a whole schema script, triggers with BEGIN ... END included", function()
      local log, r
      H.run(function()
        local c = mem()
        r = assert(db.exec(c, [[
          -- a schema file
          CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL);
          CREATE TABLE audit(account INTEGER, change INTEGER, note TEXT);
          CREATE TRIGGER accounts_audit AFTER UPDATE OF balance ON accounts
          BEGIN
            INSERT INTO audit VALUES (NEW.id, NEW.balance - OLD.balance, 'balance; changed');
            UPDATE accounts SET owner = upper(owner) WHERE id = NEW.id;
          END;
          INSERT INTO accounts(owner, balance) VALUES ('ann', 100), ('bob', 50);
        ]]))
        assert(db.exec(c, "UPDATE accounts SET balance = balance - ? WHERE id = ?", 30, 1))
        log = assert(db.query(c, "SELECT a.owner, u.change, u.note FROM audit u JOIN accounts a ON a.id = u.account"))
        db.close(c)
      end)
      assert.same({ affected_rows = 2, last_insert_id = 2 }, r)
      assert.same({ { owner = "ANN", change = -30, note = "balance; changed" } }, log)
    end)

    it("runs exactly one statement when given parameters", function()
      H.run(function()
        local c = mem()
        assert(db.exec(c, "CREATE TABLE t(v)"))
        local r, err = db.exec(c, "INSERT INTO t VALUES (?); DROP TABLE t", 1)
        assert.is_nil(r)
        assert.matches("more than one SQL statement", err, 1, true)
        assert.equal(0, db.query(c, "SELECT count(*) AS n FROM t")[1].n)
        db.close(c)
      end)
    end)

    it("stops a script at the first failing statement with its message", function()
      H.run(function()
        local c = mem()
        local r, err = db.exec(c, "CREATE TABLE a(x); INSERT INTO nope VALUES (1); CREATE TABLE b(x)")
        assert.is_nil(r)
        assert.equal("no such table: nope", err)
        assert.equal(1, #db.query(c, "SELECT name FROM sqlite_master WHERE name IN ('a', 'b')"))
        db.close(c)
      end)
    end)

    it("accepts statements that return rows (pragmas)", function()
      H.run(function()
        local c = mem()
        assert(db.exec(c, "PRAGMA user_version = 7; PRAGMA user_version"))
        assert.equal(7, db.query(c, "PRAGMA user_version")[1].user_version)
        db.close(c)
      end)
    end)

    it("query_params and exec_params are aliases, also as methods", function()
      H.run(function()
        local c = mem()
        assert(c:exec_params("CREATE TABLE t(v)"))
        assert.equal(1, c:exec_params("INSERT INTO t VALUES (?)", "x").affected_rows)
        assert.same({ { v = "x" } }, c:query_params("SELECT v FROM t WHERE v = ?", "x"))
        assert.same({ { v = "x" } }, db.query_params(c, "SELECT v FROM t"))
        assert.same({ { v = "x" } }, c:query("SELECT v FROM t"))
        local _, err = c:query_params("SELECT ?")
        assert.matches("^parameter count mismatch", err)
        c:close()
      end)
    end)
  end)

  describe("escape", function()
    it("doubles single quotes, with or without a connection", function()
      assert.equal("O''Brien", db.escape("O'Brien"))
      assert.equal("''''", db.escape("''"))
      assert.equal("plain", db.escape("plain"))
      H.run(function()
        local c = mem()
        assert.equal("it''s", db.escape(c, "it's"))
        assert.equal("it''s", c:escape("it's"))
        local nasty = "'); DROP TABLE x; --"
        local row = db.query(c, "SELECT '" .. db.escape(nasty) .. "' AS s")[1]
        assert.equal(nasty, row.s)
        db.close(c)
        assert.equal("a''b", db.escape(c, "a'b")) -- does not need an open connection
      end)
    end)

  end)

  describe("close", function()
    it("raises for something that is not a connection", function()
      for _, bad in ipairs({ 1, "x", {}, io.stdout }) do
        local ok, err = pcall(db.close, bad)
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'sqlite3.close' (sqlite3 connection expected", err, 1, true)
      end
      local ok, err = pcall(db.close)
      assert.is_false(ok)
      assert.matches("got no value", err, 1, true)
    end)

    it("does not block the loop while a statement runs on the connection: the statement is interrupted", function()
      local ticks, ticks_at_close, ticks_at_result, slow_rows, slow_err = 0, nil, nil, nil, nil
      local queued_results = {}
      local t0, t_result
      H.run(function()
        local c = mem()
        local done = false
        lunet.spawn(function()
          while not done do ticks = ticks + 1; lunet.sleep(1) end
        end)
        t0 = H.now_ms()
        lunet.spawn(function()
          -- About 25 s if it ran to its end.
          slow_rows, slow_err = db.query(c, [[
            WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000000)
            SELECT count(*) AS n FROM n]])
          ticks_at_result = ticks
          t_result = H.now_ms()
        end)
        -- Statements queued behind the running one, then the close.
        for i = 1, 5 do
          lunet.spawn(function() queued_results[i] = { db.query(c, "SELECT ? AS i", i) } end)
        end
        lunet.sleep(20)
        db.close(c)
        ticks_at_close = ticks
        assert.is_nil(ticks_at_result) -- close returned at once, the statement still running
        assert.is_true(eventually(function() return ticks_at_result ~= nil end, 60000))
        done = true
      end, 70000)
      -- The close interrupted the running statement (sqlite3_interrupt).
      assert.is_nil(slow_rows)
      assert.equal("interrupted", slow_err)
      assert.is_true(ticks_at_result >= ticks_at_close)
      assert.is_true(t_result - t0 < 4000, ("the statement ended after %d ms"):format(t_result - t0))
      -- The ones waiting behind it either ran or saw the close; none crashed or hung.
      for i = 1, 5 do
        local r = queued_results[i]
        assert.is_not_nil(r, "waiter " .. i .. " never resumed")
        if r[1] then assert.equal(i, r[1][1].i) else assert.equal("connection is closed", r[2]) end
      end
    end)

    it("closes connections the script dropped (finaliser)", function()
      H.run(function()
        local before = db._connections()
        for _ = 1, 10 do
          local c = assert(db.open())
          assert(db.exec(c, "CREATE TABLE t(x)"))
        end
        assert.equal(before + 10, db._connections())
        collectgarbage("collect")
        collectgarbage("collect")
        assert.is_true(eventually(function() return db._connections() <= before end),
          "leaked connections were not closed: " .. db._connections() - before)
      end)
    end)

    it("releases a file lock held by a dropped connection", function()
      local path = os.tmpname() .. ".db"
      H.run(function()
        do
          local c = assert(db.open(path))
          assert(db.exec(c, "PRAGMA locking_mode = EXCLUSIVE; CREATE TABLE t(x); INSERT INTO t VALUES (1)"))
        end
        collectgarbage("collect")
        collectgarbage("collect")
        local c2 = assert(db.open(path))
        assert(db.exec(c2, "PRAGMA busy_timeout = 0"))
        local ok = eventually(function() return db.exec(c2, "INSERT INTO t VALUES (2)") ~= nil end)
        assert.is_true(ok, "the dropped connection kept its lock")
        db.close(c2)
      end)
      remove_db(path)
    end)

  end)

  describe("wrong arguments", function()
    it("refuses SQL with a NUL byte instead of running part of it", function()
      H.run(function()
        local c = mem()
        assert(db.exec(c, "CREATE TABLE t(x)"))
        local r, err = db.exec(c, "DELETE FROM t\0; DROP TABLE t")
        assert.is_nil(r)
        assert.matches("NUL byte", err, 1, true)
        assert.same({}, db.query(c, "SELECT * FROM t"))
        db.close(c)
      end)
    end)
  end)

  describe("concurrency", function()
    it("serves 200 coroutines issuing statements on one connection", function()
      local results = {}
      H.run(function()
        local c = mem()
        assert(db.exec(c, "CREATE TABLE t(id INTEGER PRIMARY KEY, who INTEGER, note TEXT)"))
        local finished = 0
        for i = 1, 200 do
          lunet.spawn(function()
            local r = assert(db.exec(c, "INSERT INTO t(who, note) VALUES (?, ?)", i, "note " .. i))
            local row = assert(db.query(c, "SELECT who, note FROM t WHERE id = ?", r.last_insert_id))[1]
            results[i] = row
            finished = finished + 1
          end)
        end
        assert.is_true(eventually(function() return finished == 200 end, 30000))
        assert.equal(200, db.query(c, "SELECT count(DISTINCT who) AS n FROM t")[1].n)
        db.close(c)
      end, 40000)
      for i = 1, 200 do assert.same({ who = i, note = "note " .. i }, results[i]) end
    end)

    it("runs 8 connections in parallel, each with its own data", function()
      local sums = {}
      H.run(function()
        local finished = 0
        for k = 1, 8 do
          lunet.spawn(function()
            local c = assert(db.open())
            assert(db.exec(c, "CREATE TABLE t(v INTEGER)"))
            for v = 1, 50 do assert(db.exec(c, "INSERT INTO t VALUES (?)", v * k)) end
            sums[k] = assert(db.query(c, "SELECT sum(v) AS s, count(*) AS n FROM t"))[1]
            db.close(c)
            finished = finished + 1
          end)
        end
        assert.is_true(eventually(function() return finished == 8 end, 30000))
      end, 40000)
      for k = 1, 8 do assert.same({ s = 1275 * k, n = 50 }, sums[k]) end
    end)

    it("does not hold up one connection behind a slow statement on another", function()
      local order = {}
      H.run(function()
        local slow, fast = mem(), mem()
        local done = 0
        lunet.spawn(function()
          assert(db.query(slow, [[
            WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000000)
            SELECT count(*) AS n FROM n]]))
          order[#order + 1] = "slow"
          done = done + 1
        end)
        lunet.spawn(function()
          for _ = 1, 20 do assert(db.query(fast, "SELECT 1")) end
          order[#order + 1] = "fast"
          done = done + 1
        end)
        assert.is_true(eventually(function() return done == 2 end, 60000))
        db.close(slow); db.close(fast)
      end, 70000)
      assert.same({ "fast", "slow" }, order)
    end)

    it("finishes every statement when connections close under a crowd of waiters", function()
      local ok_count, closed_count, finished = 0, 0, 0
      H.run(function()
        local conns = {}
        for i = 1, 4 do
          conns[i] = mem()
          assert(db.exec(conns[i], "CREATE TABLE t(v)"))
        end
        for k = 1, 400 do
          lunet.spawn(function()
            for i = 1, 20 do
              local c = conns[(k + i) % 4 + 1]
              local r, err = db.query(c, "SELECT ? * 2 AS v", k)
              if r then
                assert.equal(k * 2, r[1].v)
                ok_count = ok_count + 1
              else
                assert.equal("connection is closed", err)
                closed_count = closed_count + 1
              end
            end
            finished = finished + 1
          end)
        end
        lunet.sleep(0) -- every coroutine is now waiting on its first statement
        db.close(conns[3])
        lunet.sleep(5)
        db.close(conns[1])
        assert.is_true(eventually(function() return finished == 400 end, 60000))
        db.close(conns[2]); db.close(conns[4])
      end, 70000)
      assert.equal(400 * 20, ok_count + closed_count)
      assert.is_true(closed_count > 0 and ok_count > 0)
    end)

    it("keeps the loop running while a slow statement runs", function()
      local ticks, n = 0, nil
      H.run(function()
        local c = mem()
        local done = false
        lunet.spawn(function()
          while not done do ticks = ticks + 1; lunet.sleep(1) end
        end)
        n = assert(db.query(c, [[
          WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000000)
          SELECT count(*) AS n FROM n]]))[1].n
        done = true
        db.close(c)
      end, 60000)
      assert.equal(3000000, n)
      assert.is_true(ticks >= 20, "only " .. ticks .. " ticks while the statement ran")
    end)
  end)
end)
