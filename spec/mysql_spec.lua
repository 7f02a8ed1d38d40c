-- lunet.mysql: the database API contract against a real MariaDB/MySQL server
-- (LUNET_DB_HOST/PORT/USER/PASS, default the local test server that
-- `make test` starts: 127.0.0.1:3306, root, empty password). Cases that are
-- the same for every driver are in db_contract_spec.lua.
--
-- Each run creates a uniquely named database and drops it at the end. An
-- unreachable server fails the run: nothing here is skipped.
local H = require("spec.helper")
local lunet = H.lunet
local db = require("lunet.mysql")

local SERVER = {
  host = os.getenv("LUNET_DB_HOST") or "127.0.0.1",
  port = tonumber(os.getenv("LUNET_DB_PORT") or "") or 3306,
  user = os.getenv("LUNET_DB_USER") or "root",
  password = os.getenv("LUNET_DB_PASS") or "",
}
local DBNAME = ("lunet_spec_%d_%d"):format(H.pid(), os.time())
-- SERVER as a Lua table constructor (for subprocesses).
local SERVER_LITERAL = ("{ host = %q, port = %d, user = %q, password = %q }")
  :format(SERVER.host, SERVER.port, SERVER.user, SERVER.password)

-- Connection parameters for the spec's database, with `extra` fields on top.
local function params(extra)
  local p = { database = DBNAME }
  for k, v in pairs(SERVER) do p[k] = v end
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

-- A fresh connection to the spec's database (inside H.run).
local function conn(extra)
  local c, err = db.open(params(extra))
  assert(c, "cannot connect to the MySQL test server: " .. tostring(err))
  return c
end

local eventually = H.eventually

-- The server-side id of a connection.
local function thread_id(c)
  return assert(db.query(c, "SELECT CONNECTION_ID() AS id"))[1].id
end

-- A statement that runs for seconds and can be interrupted (KILL QUERY).
local LONG_QUERY = "SELECT COUNT(*) AS n FROM seq_1_to_100000000000 WHERE seq % 7 = 3"

describe("lunet.mysql", function()
  setup(function()
    H.run(function()
      local admin, err = db.open({ host = SERVER.host, port = SERVER.port, user = SERVER.user, password = SERVER.password })
      assert(admin, "the MySQL test server is unreachable (make test starts it): " .. tostring(err))
      assert(db.exec(admin, "CREATE DATABASE `" .. DBNAME .. "` CHARACTER SET utf8mb4"))
      db.close(admin)
    end)
  end)

  teardown(function()
    H.run(function()
      local admin = assert(db.open({ host = SERVER.host, port = SERVER.port, user = SERVER.user, password = SERVER.password }))
      assert(db.exec(admin, "DROP DATABASE IF EXISTS `" .. DBNAME .. "`"))
      db.close(admin)
    end)
  end)

  describe("loading", function()
    it("exposes the driver API, with the aliases", function()
      for _, name in ipairs({ "open", "query", "exec", "query_params", "exec_params", "escape", "close" }) do
        assert.equal("function", type(db[name]), name)
      end
    end)

    it("loads the core itself when required without require('lunet')", function()
      local rc, out, err = H.luajit(([[
        local db = require("lunet.mysql")
        assert(package.loaded.lunet, "core not loaded")
        package.loaded.lunet.spawn(function()
          local c = assert(db.open({ host = %q, port = %d, user = %q, password = %q }))
          print(assert(db.query(c, "SELECT 6 * 7 AS answer"))[1].answer)
          db.close(c)
        end)
        package.loaded.lunet.run()
      ]]):format(SERVER.host, SERVER.port, SERVER.user, SERVER.password))
      assert.equal(0, rc, err)
      assert.equal("42\n", out)
    end)

    it("is found by lunet-run", function()
      local rc, out, err = H.lunet_run(([[
        local db = require("lunet.mysql")
        require("lunet").spawn(function()
          local c = assert(db.open({ host = %q, port = %d, user = %q, password = %q }))
          print(assert(db.query(c, "SELECT 'hi' AS s"))[1].s)
        end)
      ]]):format(SERVER.host, SERVER.port, SERVER.user, SERVER.password))
      assert.equal(0, rc, err)
      assert.equal("hi\n", out)
    end)
  end)

  describe("yield guard", function()
    it("raises outside a coroutine, before doing anything", function()
      local ok, err = pcall(db.open, params())
      assert.is_false(ok)
      assert.equal("mysql.open must be called from coroutine", err)
      ok, err = pcall(db.query, nil, "SELECT 1")
      assert.equal("mysql.query must be called from coroutine", err)
      ok, err = pcall(db.exec_params, nil, "SELECT 1")
      assert.equal("mysql.exec_params must be called from coroutine", err)
    end)
  end)

  describe("open", function()
    it("connects with a params table; unknown keys are ignored", function()
      H.run(function()
        local c = conn({ unknown = 1 })
        assert.matches("^mysql connection %(0x%x+%)$", tostring(c))
        local row = assert(db.query(c, "SELECT DATABASE() AS d, @@character_set_client AS cs"))[1]
        assert.equal(DBNAME, row.d)
        assert.equal("utf8mb4", row.cs) -- the default charset
        db.close(c)
        assert.equal("mysql connection (closed)", tostring(c))
      end)
    end)

    it("uses the charset it is given", function()
      H.run(function()
        local c = conn({ charset = "latin1" })
        assert.equal("latin1", db.query(c, "SELECT @@character_set_client AS cs")[1].cs)
        db.close(c)
        local none, err = db.open(params({ charset = "klingon" }))
        assert.is_nil(none)
        assert.matches("character set klingon", err, 1, true)
      end)
    end)

    it("reaches 'localhost' over the Unix socket", function()
      if SERVER.host ~= "127.0.0.1" and SERVER.host ~= "localhost" then return end
      H.run(function()
        local c = conn({ host = "localhost" })
        local row = assert(db.query(c,
          "SELECT HOST AS h FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"))[1]
        assert.equal("localhost", row.h) -- TCP clients show as address:port
        -- The same through the socket path given explicitly.
        local path = db.query(c, "SELECT @@socket AS p")[1].p
        db.close(c)
        local p = params({ socket = path })
        p.host = nil
        c = assert(db.open(p))
        assert.equal("localhost", db.query(c,
          "SELECT HOST AS h FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")[1].h)
        db.close(c)
        local tcp = conn()
        row = assert(db.query(tcp,
          "SELECT HOST AS h FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"))[1]
        assert.matches("^127%.0%.0%.1:%d+$", row.h)
        db.close(tcp)
      end)
    end)

    it("returns the server's message for wrong credentials and an unknown database", function()
      H.run(function()
        local c, err = db.open(params({ password = "definitely-wrong" }))
        assert.is_nil(c)
        assert.matches("^Access denied for user '" .. SERVER.user .. "'@'[^']+' %(using password: YES%)$", err)
        c, err = db.open(params({ user = "no_such_user_lunet", password = "x" }))
        assert.is_nil(c)
        assert.matches("Access denied for user 'no_such_user_lunet'", err, 1, true)
        c, err = db.open(params({ database = "lunet_no_such_db_" .. H.pid() }))
        assert.is_nil(c)
        assert.equal("Unknown database 'lunet_no_such_db_" .. H.pid() .. "'", err)
        -- A new open afterwards works.
        c = conn()
        db.close(c)
      end)
    end)

    it("returns the library's message for an unreachable server", function()
      H.run(function()
        local c, err = db.open(params({ host = "127.0.0.1", port = 1 }))
        assert.is_nil(c)
        assert.matches("^Can't connect to server on '127%.0%.0%.1'", err)
        c, err = db.open(params({ host = "localhost", socket = "/nonexistent/lunet.sock" }))
        assert.is_nil(c)
        assert.matches("Can't connect to local server through socket '/nonexistent/lunet.sock'", err, 1, true)
        -- A socket without a host means the local server through that socket.
        local p = params({ socket = "/nonexistent/lunet.sock" })
        p.host = nil
        c, err = db.open(p)
        assert.is_nil(c)
        assert.matches("through socket '/nonexistent/lunet.sock'", err, 1, true)
        c = conn()
        db.close(c)
      end)
    end)

    it("treats every character in every field as data", function()
      H.run(function()
        -- Quotes, semicolons and spaces reach the server as a password, not as SQL.
        local c, err = db.open(params({ password = "x'; DROP DATABASE `" .. DBNAME .. "`; -- " }))
        assert.is_nil(c)
        assert.matches("Access denied", err, 1, true)
        c, err = db.open(params({ database = DBNAME .. "`; DROP DATABASE `" .. DBNAME }))
        assert.is_nil(c)
        assert.equal("Incorrect database name '" .. DBNAME .. "`; DROP DATABASE `" .. DBNAME .. "'", err)
        for _, field in ipairs({ "host", "user", "password", "database", "charset", "socket" }) do
          c, err = db.open(params({ [field] = "a\0b" }))
          assert.is_nil(c)
          assert.equal("mysql.open: field '" .. field .. "' contains a NUL byte", err)
        end
        -- The database is still there.
        c = conn()
        assert.equal(DBNAME, db.query(c, "SELECT DATABASE() AS d")[1].d)
        db.close(c)
      end)
    end)

    for _, how in ipairs({ "raises", "yields" }) do
      it("a db.open table whose __index " .. how .. " does not abort the process", function()
        H.check_trapped_open("lunet.mysql", SERVER_LITERAL, how)
      end)
    end

    it("gives up on a server that never sends its greeting: connect_timeout = 0 or none means 10 s", function()
      H.check_silent_open(db.open, "handshake")
    end)

    it("raises for wrong argument types", function()
      H.run(function()
        for _, bad in ipairs({ 42, true, function() end }) do
          local ok, err = pcall(db.open, bad)
          assert.is_false(ok)
          assert.matches("bad argument #1 to 'mysql.open' (table or string expected", err, 1, true)
        end
        local cases = {
          { { host = 1 }, "field 'host' must be a string, got number" },
          { { user = {} }, "field 'user' must be a string, got table" },
          { { password = true }, "field 'password' must be a string, got boolean" },
          { { database = 5 }, "field 'database' must be a string, got number" },
          { { charset = false }, "field 'charset' must be a string, got boolean" },
          { { port = "abc" }, "field 'port' must be an integer from 0 to 65535, got string" },
          { { port = 70000 }, "field 'port' must be an integer from 0 to 65535, got number" },
          { { port = 1.5 }, "field 'port' must be an integer from 0 to 65535, got number" },
          { { port = {} }, "field 'port' must be an integer from 0 to 65535, got table" },
        }
        for _, case in ipairs(cases) do
          local ok, err = pcall(db.open, case[1])
          assert.is_false(ok)
          assert.matches("bad argument #1 to 'mysql.open' (" .. case[2], err, 1, true)
        end
      end)
    end)
  end)

  describe("types", function()
    -- Every column type, its value as SQL text, as a parameter, and as read back.
    local TYPES = {
      { "ti", "TINYINT", "-128", -128, -128 },
      { "si", "SMALLINT UNSIGNED", "65535", 65535, 65535 },
      { "mi", "MEDIUMINT", "-8388608", -8388608, -8388608 },
      { "i", "INT", "2147483647", 2147483647, 2147483647 },
      { "bi", "BIGINT", "9007199254740992", 2 ^ 53, 2 ^ 53 },
      { "bn", "BIGINT", "-9007199254740992", -(2 ^ 53), -(2 ^ 53) },
      { "bu", "BIGINT UNSIGNED", "18446744073709551615", "18446744073709551615", 2 ^ 64 }, -- nearest double
      { "fl", "FLOAT", "1.5", 1.5, 1.5 },
      { "fx", "FLOAT", "3.14159", 3.14159, 3.14159 },
      { "db", "DOUBLE", "0.30000000000000004", 0.1 + 0.2, 0.1 + 0.2 },
      { "dm", "DOUBLE", "-1.7976931348623157e308", -1.7976931348623157e308, -1.7976931348623157e308 },
      { "de", "DECIMAL(30,10)", "'12345678901234567890.0123456789'", "12345678901234567890.0123456789",
        "12345678901234567890.0123456789" },
      { "d", "DATE", "'2024-02-29'", "2024-02-29", "2024-02-29" },
      { "dt", "DATETIME(6)", "'2024-02-29 13:14:15.123456'", "2024-02-29 13:14:15.123456", "2024-02-29 13:14:15.123456" },
      { "ts", "TIMESTAMP NULL", "'2001-02-03 04:05:06'", "2001-02-03 04:05:06", "2001-02-03 04:05:06" },
      { "tm", "TIME", "'-838:59:59'", "-838:59:59", "-838:59:59" },
      { "y", "YEAR", "2024", 2024, 2024 },
      { "bo", "BOOLEAN", "TRUE", true, 1 },
      { "bf", "BOOLEAN", "FALSE", false, 0 },
      { "ch", "CHAR(5)", "'ab'", "ab", "ab" },
      { "vc", "VARCHAR(100)", "'h\\xC3\\xA9llo \\xE2\\x9C\\x93'", "héllo ✓", "héllo ✓" },
      { "tx", "TEXT", "'line1\\nline2'", "line1\nline2", "line1\nline2" },
      { "bl", "BLOB", "X'00FF0A27'", "\0\255\n'", "\0\255\n'" },
      { "js", "JSON", "'{\"k\": [1, 2]}'", '{"k": [1, 2]}', '{"k": [1, 2]}' },
      { "bt", "BIT(16)", "b'0000000101000001'", nil, "\1A" },
      { "en", "ENUM('a','b')", "'b'", "b", "b" },
      { "st", "SET('x','y','z')", "'x,z'", "x,z", "x,z" },
      { "nu", "INT", "NULL", nil, nil },
    }
    -- The VARCHAR literal above is written with \x escapes for readability;
    -- turn them into the bytes.
    for _, t in ipairs(TYPES) do
      t[3] = t[3]:gsub("\\x(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
    end

    local function columns()
      local names = {}
      for _, t in ipairs(TYPES) do names[#names + 1] = t[1] end
      return table.concat(names, ", ")
    end

    local function expect_row(row, how)
      for _, t in ipairs(TYPES) do
        local want = t[5]
        assert.equal(want, row[t[1]], ("%s %s read back %s"):format(t[1], t[2], how))
        if want ~= nil then assert.equal(type(want), type(row[t[1]]), t[1] .. " type " .. how) end
      end
    end

    it("round-trip with parameters and without, read back by both protocols", function()
      H.run(function()
        local c = conn()
        local defs, literals, marks, values = {}, {}, {}, {}
        for i, t in ipairs(TYPES) do
          defs[i] = t[1] .. " " .. t[2]
          literals[i] = t[3]
          marks[i] = "?"
        end
        assert(db.exec(c, "CREATE TABLE types(id INT PRIMARY KEY, " .. table.concat(defs, ", ") .. ")"))
        -- Row 1: SQL literals (text protocol).
        assert(db.exec(c, "INSERT INTO types VALUES (1, " .. table.concat(literals, ", ") .. ")"))
        -- Row 2: every value bound as a parameter (BIT as its literal: no Lua value maps to it).
        local n = 0
        for i, t in ipairs(TYPES) do
          if t[1] == "bt" then marks[i] = t[3] else n = n + 1; values[n] = t[4] end
        end
        local r = assert(db.exec(c, "INSERT INTO types VALUES (2, " .. table.concat(marks, ", ") .. ")",
          unpack(values, 1, n)))
        assert.equal(1, r.affected_rows)
        local sql = "SELECT id, " .. columns() .. " FROM types"
        local text_rows = assert(db.query(c, sql .. " ORDER BY id"))
        local bin_rows = assert(db.query(c, sql .. " WHERE id >= ? ORDER BY id", 0))
        assert.equal(2, #text_rows)
        assert.equal(2, #bin_rows)
        for k = 1, 2 do
          expect_row(text_rows[k], "row " .. k .. " as text")
          expect_row(bin_rows[k], "row " .. k .. " as a prepared statement")
        end
        assert.is_nil(text_rows[1].nu)
        db.close(c)
      end, 20000)
    end)

    it("keep integers exact to 2^53 and doubles at full precision", function()
      H.run(function()
        local c = conn()
        for _, v in ipairs({ 2 ^ 53, -(2 ^ 53), 2 ^ 53 - 1, 0, -1, 1e15 + 1 }) do
          assert.equal(v, db.query(c, "SELECT ? AS v", v)[1].v)
          assert.equal(v, db.query(c, ("SELECT %.0f AS v"):format(v))[1].v)
          assert.equal(v, db.query(c, "SELECT CAST(? AS SIGNED) AS v", v)[1].v)
        end
        for _, v in ipairs({ math.pi, 0.1 + 0.2, 1 / 3, -1.5e-300, 1.7976931348623157e308 }) do
          assert.equal(v, db.query(c, "SELECT ? AS v", v)[1].v)
          assert.equal(v, db.query(c, ("SELECT CAST(%.17g AS DOUBLE) AS v"):format(v))[1].v)
        end
        -- Beyond 2^53 the server's own arithmetic stays exact.
        assert.equal(1, db.query(c, "SELECT ? - 9007199254740991 AS d", 2 ^ 53)[1].d)
        db.close(c)
      end)
    end)

    it("bind nil, booleans, integers, doubles and strings natively", function()
      local row
      H.run(function()
        local c = conn()
        row = assert(db.query(c, [[SELECT ? AS n, ? AS t, ? AS f, ? AS i, ? AS d, ? AS s,
          ? IS NULL AS isnull, ? + 0 AS sum]], nil, true, false, 42, 0.5, "str", nil, 41))[1]
        db.close(c)
      end)
      assert.is_nil(row.n)
      assert.equal(1, row.t)
      assert.equal(0, row.f)
      assert.equal(42, row.i)
      assert.equal(0.5, row.d)
      assert.equal("str", row.s)
      assert.equal(1, row.isnull)
      assert.equal(41, row.sum)
    end)
  end)

  describe("large values and NUL bytes", function()
    local function pattern(n)
      local piece = {}
      for i = 0, 255 do piece[#piece + 1] = string.char(i) end
      local s = table.concat(piece)
      return s:rep(math.ceil(n / 256)):sub(1, n)
    end

    it("keeps every byte of strings with NULs, both ways", function()
      H.run(function()
        local c = conn()
        assert(db.exec(c, "CREATE TABLE nul(id INT PRIMARY KEY, b BLOB, t TEXT)"))
        local weird = "a\0b\255\254\0" .. ("\0"):rep(10)
        assert(db.exec(c, "INSERT INTO nul VALUES (1, ?, ?)", weird, "x\0y"))
        assert(db.exec(c, "INSERT INTO nul VALUES (2, '" .. db.escape(c, weird) .. "', 'x\\0y')"))
        for _, row in ipairs(assert(db.query(c, "SELECT b, t, LENGTH(b) AS n FROM nul"))) do
          assert.equal(weird, row.b)
          assert.equal("x\0y", row.t)
          assert.equal(#weird, row.n)
        end
        assert.equal(2, #db.query(c, "SELECT id FROM nul WHERE b = ?", weird))
        db.close(c)
      end)
    end)

    for _, size in ipairs({ 1024 * 1024, 16 * 1024 * 1024 }) do
      it(("round-trips a %d MiB value with parameters and without"):format(size / (1024 * 1024)), function()
        H.run(function()
          local c = conn()
          local big = pattern(size)
          local tname = "big" .. size
          assert(db.exec(c, "CREATE TABLE " .. tname .. "(id INT PRIMARY KEY, v LONGBLOB)"))
          assert.equal(1, assert(db.exec(c, "INSERT INTO " .. tname .. " VALUES (1, ?)", big)).affected_rows)
          -- Without parameters, built by the server.
          assert(db.exec(c, "INSERT INTO " .. tname .. " VALUES (2, REPEAT('z', " .. size .. "))"))
          local rows = assert(db.query(c, "SELECT id, v, LENGTH(v) AS n FROM " .. tname .. " ORDER BY id"))
          assert.equal(2, #rows)
          assert.equal(size, rows[1].n)
          assert.is_true(rows[1].v == big, "value changed (text protocol)")
          assert.is_true(rows[2].v == ("z"):rep(size), "server-built value changed")
          rows = assert(db.query(c, "SELECT v FROM " .. tname .. " WHERE id = ?", 1))
          assert.equal(1, #rows)
          assert.is_true(rows[1].v == big, "value changed (prepared statement)")
          -- Several rows around it: none dropped, none cut.
          assert(db.exec(c, "INSERT INTO " .. tname .. " VALUES (3, 'small'), (4, NULL)"))
          rows = assert(db.query(c, "SELECT id, v FROM " .. tname .. " WHERE id > ? ORDER BY id", 0))
          assert.equal(4, #rows)
          assert.equal(size, #rows[2].v)
          assert.equal("small", rows[3].v)
          assert.is_nil(rows[4].v)
          db.close(c)
        end, 120000)
      end)
    end
  end)

  describe("query and exec", function()
    it("return rows keyed by column name, NULL as an absent key, all rows of big results", function()
      H.run(function()
        local c = conn()
        assert(db.exec(c, [[
          CREATE TABLE people(id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50), email VARCHAR(50));
          INSERT INTO people(name, email) VALUES ('ann', 'ann@example.org'), ('bob', NULL);
        ]]))
        local rows = assert(db.query(c, "SELECT id, name, email FROM people ORDER BY id"))
        assert.same({ { id = 1, name = "ann", email = "ann@example.org" }, { id = 2, name = "bob" } }, rows)
        assert.same({}, assert(db.query(c, "SELECT id FROM people WHERE id > 100")))
        rows = assert(db.query(c, "SELECT seq AS x, NULL AS absent FROM seq_1_to_100000"))
        assert.equal(100000, #rows)
        for i = 1, #rows, 997 do assert.equal(i, rows[i].x) end
        rows = assert(db.query(c, "SELECT seq AS x FROM seq_1_to_100000 WHERE seq > ?", 0))
        assert.equal(100000, #rows)
        assert.equal(100000, rows[100000].x)
        db.close(c)
      end, 30000)
    end)

    it("empty SQL returns nil, \"Query was empty\" as blank SQL does, and does not crash", function()
      local rc, results, err = H.empty_sql("lunet.mysql", SERVER_LITERAL)
      assert.equal(0, rc, err)
      local n = 0
      for key, got in pairs(results) do
        n = n + 1
        assert.same({ [""] = "nil, Query was empty", [" "] = "nil, Query was empty" }, got, key)
      end
      assert.equal(8, n)
    end)

    it("report affected rows and the last insert id", function()
      H.run(function()
        local c = conn()
        local r = assert(db.exec(c, "CREATE TABLE t(id INT AUTO_INCREMENT PRIMARY KEY, v INT)"))
        assert.same({ affected_rows = 0, last_insert_id = 0 }, r)
        r = assert(db.exec(c, "INSERT INTO t(v) VALUES (?)", 10))
        assert.same({ affected_rows = 1, last_insert_id = 1 }, r)
        r = assert(db.exec(c, "INSERT INTO t(v) VALUES (20), (30), (40)"))
        assert.same({ affected_rows = 3, last_insert_id = 2 }, r) -- MySQL: the first id of the batch
        r = assert(db.exec(c, "UPDATE t SET v = v + 1 WHERE v >= ?", 20))
        assert.equal(3, r.affected_rows)
        r = assert(db.exec(c, "DELETE FROM t WHERE v > 1000"))
        assert.equal(0, r.affected_rows)
        r = assert(db.exec(c, "DELETE FROM t"))
        assert.equal(4, r.affected_rows)
        db.close(c)
      end)
    end)

    it("exec runs a whole script without parameters, stopping at the first error", function()
      H.run(function()
        local c = conn()
        local r = assert(db.exec(c, [[
          -- a schema file
          CREATE TABLE accounts(id INT AUTO_INCREMENT PRIMARY KEY, owner VARCHAR(20), balance INT) ENGINE=InnoDB;
          CREATE TABLE audit(account INT, note VARCHAR(50));
          INSERT INTO accounts(owner, balance) VALUES ('ann', 100), ('bob', 50);
          INSERT INTO audit VALUES (1, 'opened; with a semicolon'), (2, 'opened');
          SELECT * FROM accounts;
        ]]))
        assert.equal(4, r.affected_rows)
        local _, err = db.exec(c, "INSERT INTO audit VALUES (3, 'x'); INSERT INTO nope VALUES (1); INSERT INTO audit VALUES (4, 'y')")
        assert.equal("Table '" .. DBNAME .. ".nope' doesn't exist", err)
        assert.same({ { n = 3 } }, db.query(c, "SELECT COUNT(*) AS n FROM audit"))
        -- With parameters exactly one statement is prepared.
        r, err = db.exec(c, "INSERT INTO audit VALUES (?, 'z'); DROP TABLE audit", 9)
        assert.is_nil(r)
        assert.matches("You have an error in your SQL syntax", err, 1, true)
        assert.same({ { n = 3 } }, db.query(c, "SELECT COUNT(*) AS n FROM audit"))
        -- query without parameters returns the first result set of a script.
        assert.same({ { a = 1 } }, db.query(c, "SELECT 1 AS a; SELECT 2 AS b"))
        db.close(c)
      end)
    end)

    it("return nil and the server's full message on SQL errors, the connection still usable", function()
      H.run(function()
        local c = conn()
        local rows, err = db.query(c, "SELECT * FROM no_such_table")
        assert.is_nil(rows)
        assert.equal("Table '" .. DBNAME .. ".no_such_table' doesn't exist", err)
        rows, err = db.query(c, "SELEKT 1")
        assert.is_nil(rows)
        assert.equal("You have an error in your SQL syntax; check the manual that corresponds to your MariaDB "
          .. "server version for the right syntax to use near 'SELEKT 1' at line 1", err:gsub("MySQL", "MariaDB"))
        assert(db.exec(c, "CREATE TABLE u(x INT UNIQUE)"))
        assert(db.exec(c, "INSERT INTO u VALUES (?)", 1))
        local r
        r, err = db.exec(c, "INSERT INTO u VALUES (?)", 1)
        assert.is_nil(r)
        assert.equal("Duplicate entry '1' for key 'x'", err)
        assert.equal(1, db.query(c, "SELECT COUNT(*) AS n FROM u")[1].n)
        assert.equal(1, db.query(c, "SELECT COUNT(*) AS n FROM u WHERE x = ?", 1)[1].n)
        db.close(c)
      end)
    end)

    it("refuses SQL with a NUL byte outside a literal instead of running part of it", function()
      H.run(function()
        local c = conn()
        assert(db.exec(c, "CREATE TABLE z(x INT); INSERT INTO z VALUES (1)"))
        local r, err = db.exec(c, "DELETE FROM z\0; DROP TABLE z")
        assert.is_nil(r)
        assert.equal("string", type(err))
        assert.same({ { x = 1 } }, db.query(c, "SELECT x FROM z"))
        db.close(c)
      end)
    end)

    it("reports a parameter count mismatch both ways", function()
      H.run(function()
        local c = conn()
        assert(db.exec(c, "CREATE TABLE pc(a INT, b INT)"))
        local cases = {
          { db.query, "SELECT ?, ?", { 1 }, 1 },
          { db.query, "SELECT ?", { 1, 2 }, 2 },
          { db.query, "SELECT 1", { nil }, 1 },
          { db.exec, "INSERT INTO pc VALUES (?, ?)", { 1, 2, 3 }, 3 },
          { db.exec, "INSERT INTO pc VALUES (?, ?)", { 1 }, 1 },
        }
        for _, case in ipairs(cases) do
          local r, err = case[1](c, case[2], unpack(case[3], 1, case[4]))
          assert.is_nil(r)
          assert.matches("^parameter count mismatch: ", err)
        end
        assert.equal(0, db.query(c, "SELECT COUNT(*) AS n FROM pc")[1].n)
        db.close(c)
      end)
    end)

    it("query_params and exec_params are aliases, also as methods", function()
      H.run(function()
        local c = conn()
        assert(c:exec_params("CREATE TABLE al(v VARCHAR(10))"))
        assert.equal(1, c:exec_params("INSERT INTO al VALUES (?)", "x").affected_rows)
        assert.same({ { v = "x" } }, c:query_params("SELECT v FROM al WHERE v = ?", "x"))
        assert.same({ { v = "x" } }, db.query_params(c, "SELECT v FROM al"))
        assert.same({ { v = "x" } }, c:query("SELECT v FROM al"))
        c:close()
      end)
    end)
  end)

  describe("security", function()
    it("never uploads a client file with LOAD DATA LOCAL INFILE, even where the server allows it", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "wb"))
      f:write("secret one\nsecret two\n")
      f:close()
      local outcomes, count = {}, nil
      H.run(function()
        local c = conn()
        local was = db.query(c, "SELECT @@GLOBAL.local_infile AS v")[1].v
        assert(db.exec(c, "SET GLOBAL local_infile = 1"))
        local ok, err = pcall(function()
          local t = ("infile_%d_%d"):format(H.pid(), os.time())
          assert(db.exec(c, "CREATE TABLE " .. t .. "(line TEXT)"))
          local load = "LOAD DATA LOCAL INFILE '" .. db.escape(c, path) .. "' INTO TABLE " .. t
          outcomes[1] = { db.exec(c, load) }
          outcomes[2] = { db.query(c, load) }
          count = db.query(c, "SELECT COUNT(*) AS n FROM " .. t)[1].n
        end)
        assert(db.exec(c, "SET GLOBAL local_infile = " .. tonumber(was)))
        db.close(c)
        if not ok then error(err, 0) end
      end)
      os.remove(path)
      for _, o in ipairs(outcomes) do
        assert.is_nil(o[1])
        assert.equal("string", type(o[2]))
      end
      assert.equal(0, count)
    end)
  end)

  describe("transactions", function()
    it("commit and roll back, with savepoints, seen from another connection", function()
      H.run(function()
        local c, other = conn(), conn()
        assert(db.exec(c, "CREATE TABLE acct(id INT PRIMARY KEY, balance INT) ENGINE=InnoDB"))
        assert(db.exec(c, "INSERT INTO acct VALUES (1, 100), (2, 0)"))
        -- Rolled back: nothing changes.
        assert(db.exec(c, "START TRANSACTION"))
        assert(db.exec(c, "UPDATE acct SET balance = balance - ? WHERE id = ?", 30, 1))
        assert.equal(70, db.query(c, "SELECT balance FROM acct WHERE id = 1")[1].balance)
        assert.equal(100, db.query(other, "SELECT balance FROM acct WHERE id = 1")[1].balance)
        assert(db.exec(c, "ROLLBACK"))
        assert.equal(100, db.query(c, "SELECT balance FROM acct WHERE id = 1")[1].balance)
        -- Committed, with a savepoint rolled back inside.
        assert(db.exec(c, "BEGIN"))
        assert(db.exec(c, "UPDATE acct SET balance = balance - ? WHERE id = ?", 30, 1))
        assert(db.exec(c, "UPDATE acct SET balance = balance + ? WHERE id = ?", 30, 2))
        assert(db.exec(c, "SAVEPOINT before_fee"))
        assert(db.exec(c, "UPDATE acct SET balance = balance - 5 WHERE id = 2"))
        assert(db.exec(c, "ROLLBACK TO SAVEPOINT before_fee"))
        assert.same({ { balance = 100 }, { balance = 0 } }, db.query(other, "SELECT balance FROM acct ORDER BY id"))
        assert(db.exec(c, "COMMIT"))
        assert.same({ { balance = 70 }, { balance = 30 } }, db.query(other, "SELECT balance FROM acct ORDER BY id"))
        -- A whole transaction as one script.
        assert(db.exec(c, "START TRANSACTION; UPDATE acct SET balance = 0; ROLLBACK"))
        assert.same({ { balance = 70 }, { balance = 30 } }, db.query(other, "SELECT balance FROM acct ORDER BY id"))
        db.close(c); db.close(other)
      end)
    end)
  end)

  describe("escape", function()
    it("uses the connection's escaping, without blocking on a busy connection", function()
      H.run(function()
        local c = conn()
        local nasty = "it's a \"test\" \\ with\0nul\n\r\26 and ✓"
        local lit = db.escape(c, nasty)
        assert.equal("it\\'s a \\\"test\\\" \\\\ with\\0nul\\n\\r\\Z and ✓", lit)
        assert.equal(lit, c:escape(nasty))
        assert.equal(nasty, db.query(c, "SELECT '" .. lit .. "' AS s")[1].s)
        local injected = "'); DROP TABLE x; --"
        assert.equal(injected, db.query(c, "SELECT '" .. db.escape(c, injected) .. "' AS s")[1].s)
        -- Under NO_BACKSLASH_ESCAPES the connection doubles quotes instead.
        assert(db.exec(c, "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')"))
        assert.equal("a''b\\c", db.escape(c, "a'b\\c"))
        assert.equal("a'b\\c", db.query(c, "SELECT '" .. db.escape(c, "a'b\\c") .. "' AS s")[1].s)
        -- While a statement runs on the connection, escape answers at once.
        local finished = false
        lunet.spawn(function() db.query(c, "SELECT SLEEP(1)"); finished = true end)
        lunet.sleep(50)
        assert.equal("x''y", db.escape(c, "x'y"))
        assert.is_false(finished)
        assert.is_true(eventually(function() return finished end, 10000))
        db.close(c)
        assert.equal("x''y", db.escape(c, "x'y")) -- works on a closed connection too
        -- Without a connection: backslash escaping for utf8mb4.
        assert.equal("O\\'Brien", db.escape("O'Brien"))
      end)
    end)

  end)

  describe("close", function()
    it("does not block the loop while a statement runs on the connection: KILL QUERY stops it", function()
      local ticks, ticks_at_close, ticks_at_result, slow_rows, slow_err = 0, nil, nil, nil, nil
      local queued = {}
      local t0, t_result
      H.run(function()
        local c = conn()
        local done = false
        lunet.spawn(function()
          while not done do ticks = ticks + 1; lunet.sleep(1) end
        end)
        t0 = H.now_ms()
        lunet.spawn(function()
          slow_rows, slow_err = db.query(c, "SELECT SLEEP(5) AS s")
          ticks_at_result = ticks
          t_result = H.now_ms()
        end)
        for i = 1, 5 do
          lunet.spawn(function() queued[i] = { db.query(c, "SELECT ? AS i", i) } end)
        end
        lunet.sleep(50)
        db.close(c)
        ticks_at_close = ticks
        assert.is_nil(ticks_at_result) -- close returned at once, the statement still running
        assert.is_true(eventually(function() return ticks_at_result ~= nil end, 10000))
        done = true
      end, 20000)
      assert.is_true(ticks_at_result >= ticks_at_close)
      -- The close sent KILL QUERY: the statement stopped long before its 5 s.
      assert.is_nil(slow_rows)
      assert.equal("Query execution was interrupted", slow_err)
      assert.is_true(t_result - t0 < 4000, ("the statement ended after %d ms"):format(t_result - t0))
      for i = 1, 5 do
        local r = queued[i]
        assert.is_not_nil(r, "waiter " .. i .. " never resumed")
        if r[1] then assert.equal(i, r[1][1].i) else assert.equal("connection is closed", r[2]) end
      end
    end)

    it("closes connections the script dropped (finaliser), on the server too", function()
      H.run(function()
        local before = db._connections()
        local ids = {}
        for i = 1, 5 do
          local c = conn()
          ids[i] = thread_id(c)
        end
        assert.equal(before + 5, db._connections())
        collectgarbage("collect")
        collectgarbage("collect")
        assert.is_true(eventually(function() return db._connections() <= before end),
          "leaked connections were not closed: " .. db._connections() - before)
        local watcher = conn()
        assert.is_true(eventually(function()
          local rows = db.query(watcher, "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID IN ("
            .. table.concat(ids, ",") .. ")")
          return rows[1].n == 0
        end), "the server still has the dropped connections")
        db.close(watcher)
      end)
    end)

  end)

  describe("faults", function()
    it("a connection the server dropped reports it, stays broken, and a new open works", function()
      H.run(function()
        local victim, killer = conn(), conn()
        assert(db.exec(victim, "SET @session_state = 42"))
        assert(db.exec(killer, "KILL " .. thread_id(victim)))
        local rows, err = db.query(victim, "SELECT @session_state AS s")
        assert.is_nil(rows)
        assert.matches("^Lost connection to server during query$", err) -- (CR_SERVER_LOST)
        -- Never silently reconnected (that would lose @session_state): broken from now on.
        for _, call in ipairs({
          function() return db.query(victim, "SELECT 1") end,
          function() return db.exec(victim, "SELECT ?", 1) end,
        }) do
          local r, e = call()
          assert.is_nil(r)
          assert.equal("connection is broken: " .. err, e)
        end
        db.close(victim)
        local fresh = conn()
        assert.same({ { s = 1 } }, db.query(fresh, "SELECT 1 AS s"))
        assert.is_nil(db.query(fresh, "SELECT @session_state AS s")[1].s)
        db.close(fresh); db.close(killer)
      end)
    end)

    it("SQL longer than the server's max_allowed_packet: the server hangs up, and the connection says so", function()
      H.run(function()
        local c = conn()
        local limit = db.query(c, "SELECT @@max_allowed_packet AS n")[1].n
        local r, err = db.query(c, "SELECT '" .. ("x"):rep(limit + 1024) .. "' AS v")
        assert.is_nil(r)
        assert.equal("Got a packet bigger than 'max_allowed_packet' bytes", err)
        local _, again = db.query(c, "SELECT 1")
        assert.equal("connection is broken: " .. err, again)
        db.close(c)
        -- A parameter that long is refused by the server without losing the connection.
        c = conn()
        r, err = db.query(c, "SELECT LENGTH(?) AS n", ("y"):rep(limit + 1))
        assert.is_nil(r)
        assert.matches("longer than 'max_allowed_packet' bytes", err, 1, true)
        assert.same({ { x = 1 } }, db.query(c, "SELECT 1 AS x"))
        db.close(c)
      end, 60000)
    end)

    it("a connection dropped during a statement returns nil, err to that statement", function()
      H.run(function()
        local victim, killer = conn(), conn()
        local id = thread_id(victim)
        local rows, err
        lunet.spawn(function() lunet.sleep(200); assert(db.exec(killer, "KILL CONNECTION " .. id)) end)
        rows, err = db.query(victim, "SELECT SLEEP(10) AS s")
        assert.is_nil(rows)
        assert.matches("^Lost connection to server during query$", err)
        local _, again = db.query(victim, "SELECT 1")
        assert.equal("connection is broken: " .. err, again)
        db.close(victim); db.close(killer)
      end, 20000)
    end)

    it("a statement killed with KILL QUERY fails alone; the connection stays usable", function()
      H.run(function()
        local victim, killer = conn(), conn()
        local id = thread_id(victim)
        lunet.spawn(function() lunet.sleep(300); assert(db.exec(killer, "KILL QUERY " .. id)) end)
        local rows, err = db.query(victim, LONG_QUERY)
        assert.is_nil(rows)
        assert.equal("Query execution was interrupted", err)
        assert.same({ { x = 1 } }, db.query(victim, "SELECT 1 AS x"))
        -- The same with a prepared statement.
        lunet.spawn(function() lunet.sleep(300); assert(db.exec(killer, "KILL QUERY " .. id)) end)
        rows, err = db.query(victim, LONG_QUERY .. " AND seq > ?", 0)
        assert.is_nil(rows)
        assert.equal("Query execution was interrupted", err)
        assert.same({ { x = 2 } }, db.query(victim, "SELECT ? AS x", 2))
        db.close(victim); db.close(killer)
      end, 30000)
    end)
  end)

  describe("concurrency", function()
    it("serves 100 coroutines issuing statements on one connection", function()
      local results = {}
      H.run(function()
        local c = conn()
        assert(db.exec(c, "CREATE TABLE crowd(id INT AUTO_INCREMENT PRIMARY KEY, who INT, note VARCHAR(20))"))
        local finished = 0
        for i = 1, 100 do
          lunet.spawn(function()
            local r = assert(db.exec(c, "INSERT INTO crowd(who, note) VALUES (?, ?)", i, "note " .. i))
            results[i] = assert(db.query(c, "SELECT who, note FROM crowd WHERE id = ?", r.last_insert_id))[1]
            finished = finished + 1
          end)
        end
        assert.is_true(eventually(function() return finished == 100 end, 30000))
        assert.equal(100, db.query(c, "SELECT COUNT(DISTINCT who) AS n FROM crowd")[1].n)
        db.close(c)
      end, 40000)
      for i = 1, 100 do assert.same({ who = i, note = "note " .. i }, results[i]) end
    end)

    it("runs 8 connections in parallel, each with its own session", function()
      local sums, ids = {}, {}
      H.run(function()
        local finished = 0
        for k = 1, 8 do
          lunet.spawn(function()
            local c = conn()
            ids[k] = thread_id(c)
            assert(db.exec(c, "CREATE TEMPORARY TABLE mine(v INT)"))
            for v = 1, 50 do assert(db.exec(c, "INSERT INTO mine VALUES (?)", v * k)) end
            -- (SUM of integers is a DECIMAL, which reads as a string: cast it.)
            sums[k] = assert(db.query(c, "SELECT CAST(SUM(v) AS SIGNED) AS s, COUNT(*) AS n FROM mine"))[1]
            db.close(c)
            finished = finished + 1
          end)
        end
        assert.is_true(eventually(function() return finished == 8 end, 30000))
      end, 40000)
      local distinct = {}
      for k = 1, 8 do
        assert.same({ s = 1275 * k, n = 50 }, sums[k])
        distinct[ids[k]] = true
      end
      local n = 0
      for _ in pairs(distinct) do n = n + 1 end
      assert.equal(8, n)
    end)

    it("runs statements of different connections at the same time on the server", function()
      local seen
      H.run(function()
        local sleepers, watcher = { conn(), conn(), conn() }, conn()
        local marker = "lunet_par_" .. H.pid()
        local done = 0
        for _, s in ipairs(sleepers) do
          lunet.spawn(function()
            assert(db.query(s, "SELECT SLEEP(1) AS " .. marker))
            done = done + 1
          end)
        end
        lunet.sleep(300)
        seen = db.query(watcher, "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE ?",
          "SELECT SLEEP(1) AS " .. marker)[1].n
        assert.is_true(eventually(function() return done == 3 end, 10000))
        for _, s in ipairs(sleepers) do db.close(s) end
        db.close(watcher)
      end, 20000)
      assert.is_true(seen >= 2, "only " .. tostring(seen) .. " statement(s) ran at once")
    end)

    it("keeps the loop ticking during SELECT SLEEP(1)", function()
      local ticks, row = 0, nil
      H.run(function()
        local c = conn()
        local done = false
        lunet.spawn(function()
          while not done do ticks = ticks + 1; lunet.sleep(1) end
        end)
        local t0 = H.now_ms()
        row = assert(db.query(c, "SELECT SLEEP(1) AS s"))[1]
        assert.is_true(H.now_ms() - t0 >= 900)
        done = true
        db.close(c)
      end, 20000)
      assert.same({ s = 0 }, row)
      assert.is_true(ticks >= 100, "only " .. ticks .. " ticks while the statement ran")
    end)
  end)
end)
