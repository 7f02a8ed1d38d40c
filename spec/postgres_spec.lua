-- lunet.postgres: the database API contract against a real PostgreSQL server
-- (LUNET_DB_HOST/PORT/USER/PASS, default the local test server on
-- 127.0.0.1:5432 as postgres). Each run creates its own database, with a name
-- full of characters that would break a pasted connection string, and drops
-- it afterwards. An unreachable server fails the run: nothing is skipped.
-- Cases that are the same for every driver are in db_contract_spec.lua.
local H = require("spec.helper")
local lunet = H.lunet
local pg = require("lunet.postgres")
local socket = require("lunet.socket")

local SERVER = {
  host = os.getenv("LUNET_DB_HOST") or "127.0.0.1",
  port = tonumber(os.getenv("LUNET_DB_PORT") or "") or 5432,
  user = os.getenv("LUNET_DB_USER") or "postgres",
  password = os.getenv("LUNET_DB_PASS"),
}
local RUN = ("%d_%d"):format(H.pid(), os.time())
local DBNAME = ("lunet_spec_%s o'q \\ \"x\""):format(RUN)
local ODD_ROLE = ("lunet_role_%s it's \\ \"odd\""):format(RUN)
local ODD_PASSWORD = " it's a \\ pass'word with spaces "

local function ident(s) return '"' .. s:gsub('"', '""') .. '"' end

-- Connection parameters for the spec's database (or `database`), overridden by `extra`.
local function params(extra, database)
  local p = { host = SERVER.host, port = SERVER.port, user = SERVER.user, password = SERVER.password,
              database = database or DBNAME }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

-- A connection to the spec's database (inside H.run).
local function connect(extra)
  local c, err = pg.open(params(extra))
  assert(c, err)
  return c
end

local function one(c, sql, ...)
  local rows, err = c:query(sql, ...)
  assert(rows, err)
  return rows[1]
end

local eventually = H.eventually

-- The connection parameters as a Lua table constructor (for subprocesses).
local function params_literal()
  local parts = {}
  for k, v in pairs(params()) do parts[#parts + 1] = ("%s = %q"):format(k, v) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

-- Lua source that sets `P` to the connection parameters (for subprocesses).
local function params_src()
  return "local P = " .. params_literal() .. "\n"
end

describe("lunet.postgres", function()
  setup(function()
    H.run(function()
      local admin = assert(pg.open(params(nil, "postgres")))
      assert(admin:exec("CREATE DATABASE " .. ident(DBNAME)))
      assert(admin:exec("CREATE ROLE " .. ident(ODD_ROLE) .. " LOGIN PASSWORD '" .. pg.escape(ODD_PASSWORD) .. "'"))
      assert(admin:exec("GRANT ALL ON DATABASE " .. ident(DBNAME) .. " TO " .. ident(ODD_ROLE)))
      admin:close()
    end, 30000)
  end)

  teardown(function()
    H.run(function()
      local admin = assert(pg.open(params(nil, "postgres")))
      assert(admin:exec("DROP DATABASE IF EXISTS " .. ident(DBNAME) .. " WITH (FORCE)"))
      assert(admin:exec("DROP ROLE IF EXISTS " .. ident(ODD_ROLE)))
      admin:close()
    end, 30000)
  end)

  describe("loading", function()
    it("exposes the driver API, with the aliases", function()
      for _, name in ipairs({ "open", "query", "exec", "query_params", "exec_params", "escape", "close" }) do
        assert.equal("function", type(pg[name]), name)
      end
    end)

    it("loads the core itself when required without require('lunet')", function()
      local rc, out, err = H.luajit(params_src() .. [[
        local db = require("lunet.postgres")
        assert(package.loaded.lunet, "core not loaded")
        package.loaded.lunet.spawn(function()
          local c = assert(db.open(P))
          print(assert(db.query(c, "SELECT 6 * 7 AS answer"))[1].answer)
          db.close(c)
        end)
        package.loaded.lunet.run()
      ]])
      assert.equal(0, rc, err)
      assert.equal("42\n", out)
    end)

    it("raises outside a coroutine, before doing anything", function()
      local ok, err = pcall(pg.open, params())
      assert.is_false(ok)
      assert.equal("postgres.open must be called from coroutine", err)
      ok, err = pcall(pg.query, nil, "SELECT 1")
      assert.equal("postgres.query must be called from coroutine", err)
    end)
  end)

  describe("open", function()
    it("connects, ignores unknown keys, and names the handle", function()
      H.run(function()
        local c = connect({ unknown_key = 1, port = tostring(SERVER.port) })
        assert.matches("^postgres connection %(0x%x+%)$", tostring(c))
        local row = one(c, "SELECT current_database() AS db, current_user AS u")
        assert.equal(DBNAME, row.db)
        assert.equal(SERVER.user, row.u)
        c:close()
        assert.equal("postgres connection (closed)", tostring(c))
      end)
    end)

    it("connects through a Unix-domain socket directory as host", function()
      local dir = "/var/run/postgresql"
      local f = io.open(("%s/.s.PGSQL.%d"):format(dir, SERVER.port))
      if not f or (SERVER.host ~= "127.0.0.1" and SERVER.host ~= "localhost") then
        if f then f:close() end
        return -- the server is not local: nothing to check here (TCP is tested throughout)
      end
      f:close()
      H.run(function()
        local c = connect({ host = dir })
        assert.is_true(one(c, "SELECT inet_server_addr() IS NULL AS unix").unix)
        local done = 0
        for i = 1, 20 do
          lunet.spawn(function()
            assert.equal(i, one(c, "SELECT $1::int AS v", i).v)
            done = done + 1
          end)
        end
        assert.is_true(eventually(function() return done == 20 end))
        c:close()
      end)
    end)

    it("passes names with quotes, backslashes and spaces intact (real server)", function()
      H.run(function()
        local c = assert(pg.open(params({ user = ODD_ROLE, password = ODD_PASSWORD })))
        local row = one(c, "SELECT current_user AS u, current_database() AS db")
        assert.equal(ODD_ROLE, row.u)
        assert.equal(DBNAME, row.db)
        c:close()
      end)
    end)

    it("sends the password byte for byte (checked by a fake server asking for it)", function()
      -- The test server trusts loopback and never looks at passwords, so a
      -- stand-in server speaks the start of the protocol, asks for a
      -- cleartext password, records what arrives, and refuses the login.
      local seen, err, c = {}, nil, nil
      H.run(function()
        local l = assert(socket.listen("tcp", "127.0.0.1", 0))
        local _, port = socket.getsockname(l)
        local function be32(n) return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256) end
        local function u32(s) local a, b, x, d = s:byte(1, 4); return ((a * 256 + b) * 256 + x) * 256 + d end
        lunet.spawn(function()
          local conn = assert(socket.accept(l))
          local buf = ""
          local function need(n)
            while #buf < n do buf = buf .. assert(socket.read(conn)) end
            local s = buf:sub(1, n)
            buf = buf:sub(n + 1)
            return s
          end
          while true do
            local body = need(u32(need(4)) - 4)
            local code = u32(body)
            if code == 80877103 or code == 80877104 then
              socket.write(conn, "N") -- no SSL, no GSS encryption
            else
              seen.protocol = code
              for k, v in body:sub(5):gmatch("(%Z+)%z(%Z*)%z") do seen[k] = v end
              break
            end
          end
          socket.write(conn, "R" .. be32(8) .. be32(3)) -- AuthenticationCleartextPassword
          seen.tag = need(1)
          seen.password = need(u32(need(4)) - 4)
          local msg = "SFATAL\0VFATAL\0C28P01\0Mfake server: password received\0\0"
          socket.write(conn, "E" .. be32(#msg + 4) .. msg)
          socket.close(conn)
          socket.close(l)
        end)
        c, err = pg.open({ host = "127.0.0.1", port = port, user = ODD_ROLE, password = ODD_PASSWORD, database = DBNAME })
      end)
      assert.is_nil(c)
      assert.matches("fake server: password received", err, 1, true)
      assert.equal(196608, seen.protocol) -- protocol 3.0
      assert.equal(ODD_ROLE, seen.user)
      assert.equal(DBNAME, seen.database)
      assert.equal("p", seen.tag)
      assert.equal(ODD_PASSWORD .. "\0", seen.password)
    end)

    it("returns nil and the server's message for a role or database that does not exist", function()
      H.run(function()
        local c, err = pg.open(params({ user = "lunet_no_such_role_" .. RUN }))
        assert.is_nil(c)
        assert.matches('role "lunet_no_such_role_' .. RUN .. '" does not exist', err, 1, true)
        c, err = pg.open(params(nil, "lunet_no_such_db_" .. RUN))
        assert.is_nil(c)
        assert.matches('database "lunet_no_such_db_' .. RUN .. '" does not exist', err, 1, true)
        -- A later open works.
        c = connect()
        assert.equal(1, one(c, "SELECT 1 AS one").one)
        c:close()
      end)
    end)

    it("cannot be redirected by a value that looks like connection-string syntax", function()
      H.run(function()
        local c, err = pg.open(params({ host = SERVER.host .. " dbname=postgres" }))
        assert.is_nil(c)
        assert.equal("string", type(err))
        c, err = pg.open(params(nil, "postgres user=nobody"))
        assert.is_nil(c)
        assert.matches('database "postgres user=nobody" does not exist', err, 1, true)
        c, err = pg.open(params(nil, "postgresql://127.0.0.1/postgres"))
        assert.is_nil(c)
        assert.matches('database "postgresql://127.0.0.1/postgres" does not exist', err, 1, true)
      end)
    end)

    it("refuses a NUL byte in a field with a clear error", function()
      H.run(function()
        for _, field in ipairs({ "password", "user", "database", "host" }) do
          local c, err = pg.open(params({ [field] = "a\0b" }))
          assert.is_nil(c)
          assert.equal("postgres.open: field '" .. field .. "' contains a NUL byte", err)
        end
      end)
    end)

    it("returns nil, err when nothing listens, or the server hangs up", function()
      H.run(function()
        local l = assert(socket.listen("tcp", "127.0.0.1", 0))
        local _, port = socket.getsockname(l)
        socket.close(l)
        local c, err = pg.open(params({ port = port }))
        assert.is_nil(c)
        assert.matches("Connection refused", err, 1, true)
        l = assert(socket.listen("tcp", "127.0.0.1", 0))
        _, port = socket.getsockname(l)
        lunet.spawn(function()
          local conn = socket.accept(l)
          socket.read(conn) -- the startup packet
          socket.close(conn)
          socket.close(l)
        end)
        c, err = pg.open(params({ port = port, sslmode = "disable" }))
        assert.is_nil(c)
        assert.is_truthy(err:find("server closed the connection unexpectedly", 1, true)
          or err:find("reset by peer", 1, true), err)
      end)
    end)

    for _, how in ipairs({ "raises", "yields" }) do
      it("a db.open table whose __index " .. how .. " does not abort the process", function()
        H.check_trapped_open("lunet.postgres", params_literal(), how)
      end)
    end

    it("gives up on a server that never answers: connect_timeout = 0 or none means 10 s", function()
      H.check_silent_open(pg.open, "timeout expired")
    end)

    it("raises for arguments of the wrong type", function()
      H.run(function()
        for _, bad in ipairs({ 42, true, "host=127.0.0.1", function() end }) do
          local ok, err = pcall(pg.open, bad)
          assert.is_false(ok)
          assert.matches("bad argument #1 to 'postgres.open' (table expected", err, 1, true)
        end
        local cases = {
          { { host = {} }, "field 'host' must be a string, got table" },
          { { password = true }, "field 'password' must be a string, got boolean" },
          { { port = "abc" }, "field 'port' must be an integer, got string" },
          { { port = 5432.5 }, "field 'port' must be a non-negative integer" },
          { { connect_timeout = -1 }, "field 'connect_timeout' must be a non-negative integer" },
        }
        for _, case in ipairs(cases) do
          local ok, err = pcall(pg.open, case[1])
          assert.is_false(ok)
          assert.matches(case[2], err, 1, true)
        end
      end)
    end)
  end)

  describe("types", function()
    it("maps every result type: numbers, booleans, bytes, text, NULL absent", function()
      local row
      H.run(function()
        local c = connect()
        assert(c:exec("SET TIME ZONE 'UTC'"))
        row = one(c, [[SELECT 7::int2 AS i2, (-2147483648)::int4 AS i4, 9007199254740993::int8 AS i8,
          0.5::float4 AS f4, 3.14159265358979::float8 AS f8, 1234567.5::numeric AS num,
          'Infinity'::float8 AS inf, 'NaN'::float8 AS nan, true AS t, false AS f,
          '\x00ff41'::bytea AS b, 'héllo'::text AS txt, 'v'::varchar(3) AS vc,
          '2024-02-29 12:34:56+00'::timestamptz AS ts, '{"a": [1, 2]}'::jsonb AS j,
          ARRAY[1, 2, 3] AS arr, '00000000-0000-0000-0000-000000000001'::uuid AS id,
          NULL::int AS missing, 12345678901234567890.5::numeric AS bignum]])
        c:close()
      end)
      assert.equal(7, row.i2)
      assert.equal(-2147483648, row.i4)
      assert.equal(9007199254740992, row.i8) -- the nearest double
      assert.equal(0.5, row.f4)
      assert.equal(3.14159265358979, row.f8)
      assert.equal(1234567.5, row.num)
      assert.equal(math.huge, row.inf)
      assert.is_true(row.nan ~= row.nan)
      assert.is_true(row.t)
      assert.is_false(row.f)
      assert.equal("\0\255A", row.b)
      assert.equal("héllo", row.txt)
      assert.equal("v", row.vc)
      assert.equal("2024-02-29 12:34:56+00", row.ts)
      assert.equal('{"a": [1, 2]}', row.j)
      assert.equal("{1,2,3}", row.arr)
      assert.equal("00000000-0000-0000-0000-000000000001", row.id)
      assert.is_nil(row.missing)
      assert.equal(12345678901234567890.5, row.bignum) -- numeric: the nearest double
    end)

    it("round-trips every parameter type through typed columns", function()
      local rows
      H.run(function()
        local c = connect()
        assert(c:exec("SET TIME ZONE 'UTC'"))
        assert(c:exec([[CREATE TABLE typed(k serial PRIMARY KEY, i2 int2, i4 int4, i8 int8, f4 float4,
          f8 float8, num numeric, b bool, by bytea, t text, vc varchar(20), ts timestamptz)]]))
        local ins = "INSERT INTO typed(i2, i4, i8, f4, f8, num, b, by, t, vc, ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        assert(c:exec(ins, -32768, 2147483647, -9223372036854775808, 0.25, 3.14159265358979, 1234567.5,
          true, "\0\1\2\255'\\", "it's \\ text", "short", "2020-01-01T00:00:00Z"))
        assert(c:exec(ins, 0, 0, 2 ^ 53, -1.5, 1234567.5, 3.14159265358979, false, "", "", "", nil))
        assert(c:exec(ins, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil))
        rows = assert(c:query("SELECT * FROM typed ORDER BY k"))
        c:close()
      end)
      assert.equal(3, #rows)
      local r = rows[1]
      assert.same({ -32768, 2147483647, -9223372036854775808, 0.25, 3.14159265358979, 1234567.5, true },
        { r.i2, r.i4, r.i8, r.f4, r.f8, r.num, r.b })
      assert.equal("\0\1\2\255'\\", r.by)
      assert.equal("it's \\ text", r.t)
      assert.equal("short", r.vc)
      assert.equal("2020-01-01 00:00:00+00", r.ts)
      r = rows[2]
      assert.same({ 0, 0, 2 ^ 53, -1.5, 1234567.5, 3.14159265358979, false, "", "", "" },
        { r.i2, r.i4, r.i8, r.f4, r.f8, r.num, r.b, r.by, r.t, r.vc })
      assert.is_nil(r.ts)
      assert.same({ k = 3 }, rows[3])
    end)

    it("binds integers as int8, other numbers as exact float8, booleans as bool", function()
      local row
      H.run(function()
        local c = connect()
        row = one(c, [[SELECT $1 AS i, pg_typeof($1)::text AS ti, $2 AS f, pg_typeof($2)::text AS tf,
          $3 AS b, pg_typeof($3)::text AS tb, $4::text AS s, $5 AS n, $1 * 2 AS double,
          $2 = 3.14159265358979::float8 AS pi_exact, $6 = 1234567.5::float8 AS half_exact,
          $7 AS third, $8 AS tiny]], 4294967296, 3.14159265358979, true, "str", nil, 1234567.5, 1 / 3, -1.5e-300)
        c:close()
      end)
      assert.equal(4294967296, row.i)
      assert.equal("bigint", row.ti)
      assert.equal(3.14159265358979, row.f)
      assert.equal("double precision", row.tf)
      assert.is_true(row.b)
      assert.equal("boolean", row.tb)
      assert.equal("str", row.s)
      assert.is_nil(row.n)
      assert.equal(8589934592, row.double) -- int8 arithmetic on the server (int4 would overflow)
      assert.is_true(row.pi_exact)
      assert.is_true(row.half_exact)
      assert.equal(1 / 3, row.third)
      assert.equal(-1.5e-300, row.tiny)
    end)

    it("keeps 3.14159265358979 and 1234567.5 exact through float8 and numeric, both ways", function()
      H.run(function()
        local c = connect()
        assert(c:exec("CREATE TABLE nums(f float8, n numeric)"))
        for _, v in ipairs({ 3.14159265358979, 1234567.5, 0.1, 1 / 3, 1e300, -2.5e-310, 2 ^ 60 + 2 ^ 8 }) do
          assert(c:exec("DELETE FROM nums"))
          assert(c:exec("INSERT INTO nums VALUES ($1, $1)", v))
          local row = one(c, "SELECT f, n, f = $1 AS same FROM nums", v)
          assert.equal(v, row.f)
          assert.is_true(row.same)
          if v == 1 / 3 then
            -- PostgreSQL's own float8 -> numeric cast keeps 15 significant digits.
            assert.is_true(math.abs(v - row.n) < 1e-15)
          else
            assert.equal(v, row.n)
          end
        end
        -- A numeric with more digits than a double holds comes back as the nearest double;
        -- as text it keeps every digit.
        local row = one(c, "SELECT $1::numeric AS n, $1::numeric::text AS t", "3.14159265358979323846264338327950288")
        assert.equal(3.141592653589793, row.n)
        assert.equal("3.14159265358979323846264338327950288", row.t)
        c:close()
      end)
    end)

    it("passes 1 MiB of text and 1 MiB of bytea with NULs intact", function()
      H.run(function()
        local c = connect()
        local bytes = {}
        for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
        local blob = table.concat(bytes):rep(4096) -- 1 MiB, every byte value, 4096 NULs
        local text = ("lunet é \\ ' "):rep(87382):sub(1, 1024 * 1024)
        assert(c:exec("CREATE TABLE big(t text, b bytea)"))
        assert(c:exec("INSERT INTO big VALUES ($1, $2)", text, blob))
        local row = one(c, "SELECT t, b, length(t) AS tl, octet_length(b) AS bl FROM big")
        assert.equal(#blob, row.bl)
        assert.equal(blob, row.b)
        assert.equal(text, row.t)
        -- Straight back through a parameter, too.
        assert.equal(blob, one(c, "SELECT $1::bytea AS b", blob).b)
        assert.equal(#text, one(c, "SELECT octet_length($1::text) AS n", text).n)
        c:close()
      end, 30000)
    end)

    it("refuses a NUL byte in a string bound to text, clearly; bytea takes it", function()
      H.run(function()
        local c = connect()
        local rows, err = c:query("SELECT $1::text AS t", "a\0b")
        assert.is_nil(rows)
        assert.equal("parameter $1 contains a NUL byte, which PostgreSQL text cannot hold " ..
          "(bind binary data to a bytea parameter, e.g. $1::bytea)", err)
        assert.equal("a\0b", one(c, "SELECT $1::bytea AS b", "a\0b").b)
        -- Bytes that look like bytea's text syntax stay themselves.
        assert.equal("\\x41", one(c, "SELECT $1::bytea AS b", "\\x41").b)
        c:close()
      end)
    end)

    it("lets the server infer string parameters (ints, dates, json)", function()
      H.run(function()
        local c = connect()
        local row = one(c, "SELECT $1::int + 1 AS n, $2::date + 1 AS d, ($3::jsonb)->>'k' AS j", "41", "2024-02-28", '{"k":"v"}')
        assert.same({ n = 42, d = "2024-02-29", j = "v" }, row)
        c:close()
      end)
    end)
  end)

  describe("statements", function()
    it("returns rows in order, an empty array when nothing matches, and every row of big results", function()
      H.run(function()
        local c = connect()
        assert.same({}, assert(c:query("SELECT 1 AS x WHERE false")))
        assert.same({}, assert(c:query("CREATE TABLE IF NOT EXISTS empty_result(x int)")))
        local rows = assert(c:query("SELECT x, NULL::int AS absent FROM generate_series(1, 100000) AS x"))
        assert.equal(100000, #rows)
        for i = 1, #rows, 997 do assert.equal(i, rows[i].x) end
        assert.is_nil(rows[1].absent)
        c:close()
      end)
    end)

    it("returns the server's full error message; the connection stays usable", function()
      H.run(function()
        local c = connect()
        local rows, err = c:query("SELECT * FROM no_such_table")
        assert.is_nil(rows)
        assert.matches('ERROR:  relation "no_such_table" does not exist', err, 1, true)
        rows, err = c:query("SELEKT 1")
        assert.is_nil(rows)
        assert.matches('syntax error at or near "SELEKT"', err, 1, true)
        assert(c:exec("CREATE TABLE u(x int PRIMARY KEY)"))
        assert(c:exec("INSERT INTO u VALUES ($1)", 1))
        local r
        r, err = c:exec("INSERT INTO u VALUES ($1)", 1)
        assert.is_nil(r)
        assert.matches('duplicate key value violates unique constraint "u_pkey"', err, 1, true)
        assert.matches("DETAIL:  Key (x)=(1) already exists.", err, 1, true)
        local long = ("x"):rep(5000)
        rows, err = c:exec("DO $$ BEGIN RAISE EXCEPTION 'long: %', repeat('x', 5000); END $$")
        assert.is_nil(rows)
        assert.matches("long: " .. long, err, 1, true) -- never truncated
        assert.equal(1, one(c, "SELECT count(*) AS n FROM u").n)
        c:close()
      end)
    end)

    it("empty SQL gives what blank SQL gives (no rows, nothing changed)", function()
      local rc, results, err = H.empty_sql("lunet.postgres", params_literal())
      assert.equal(0, rc, err)
      assert.same(H.EMPTY_SQL_DOES_NOTHING, results)
    end)

    it("reports a parameter count mismatch both ways", function()
      H.run(function()
        local c = connect()
        local cases = {
          { "query", "SELECT $1, $2", { 1 } },
          { "query", "SELECT $1", { 1, 2 } },
          { "query", "SELECT 1", { false } },
          { "query", "SELECT $1", {} },
          { "exec", "SELECT $2", { 1 } },
          { "exec", "SELECT $1 AS x", {} },
        }
        for _, case in ipairs(cases) do
          local r, err = c[case[1]](c, case[2], unpack(case[3], 1, #case[3]))
          assert.is_nil(r)
          assert.matches("^parameter count mismatch: ", err)
        end
        -- Placeholders inside literals, identifiers, comments and dollar quotes do not count.
        local row = one(c, [[SELECT '$2' AS s, $1 AS v /* $3 */, $$ $4 $$ AS d -- $5
          ]], "only")
        assert.same({ s = "$2", v = "only", d = " $4 " }, row)
        c:close()
      end)
    end)

    it("raises for values that cannot be bound and for wrong argument types", function()
      H.run(function()
        local c = connect()
        for _, bad in ipairs({ {}, function() end, coroutine.create(function() end), io.stdout }) do
          local ok, err = pcall(c.query, c, "SELECT $1", bad)
          assert.is_false(ok)
          assert.matches("parameter 1 must be nil, boolean, number or string", err, 1, true)
        end
        for _, bad in ipairs({ 1, {}, true }) do
          local ok, err = pcall(pg.query, c, bad)
          assert.is_false(ok)
          assert.matches("bad argument #2 to 'postgres.query' (string expected", err, 1, true)
        end
        local ok0, err0 = pcall(pg.query, c)
        assert.is_false(ok0)
        assert.matches("bad argument #2 to 'postgres.query' (string expected, got no value)", err0, 1, true)
        for _, bad in ipairs({ 1, "x", {}, io.stdout }) do
          local ok, err = pcall(pg.exec, bad, "SELECT 1")
          assert.is_false(ok)
          assert.matches("bad argument #1 to 'postgres.exec' (postgres connection expected", err, 1, true)
          ok, err = pcall(pg.close, bad)
          assert.is_false(ok)
          assert.matches("bad argument #1 to 'postgres.close' (postgres connection expected", err, 1, true)
        end
        -- A connection of another driver is not a postgres connection.
        local sqlite3 = require("lunet.sqlite3")
        local other = assert(sqlite3.open())
        local ok, err = pcall(pg.query, other, "SELECT 1")
        assert.is_false(ok)
        assert.matches("postgres connection expected", err, 1, true)
        sqlite3.close(other)
        local rows, qerr = c:query("SELECT 1\0; DROP TABLE x")
        assert.is_nil(rows)
        assert.matches("NUL byte", qerr, 1, true)
        c:close()
      end)
    end)

    it("exec reports affected rows from the command tag and RETURNING ids", function()
      H.run(function()
        local c = connect()
        local r = assert(c:exec("CREATE TABLE t(id serial PRIMARY KEY, v int)"))
        assert.same({ affected_rows = 0, last_insert_id = 0 }, r)
        r = assert(c:exec("INSERT INTO t(v) VALUES ($1)", 10))
        assert.same({ affected_rows = 1, last_insert_id = 0 }, r)
        r = assert(c:exec("INSERT INTO t(v) VALUES ($1) RETURNING id", 20))
        assert.same({ affected_rows = 1, last_insert_id = 2 }, r)
        r = assert(c:exec("INSERT INTO t(v) VALUES (30), (40) RETURNING id"))
        assert.same({ affected_rows = 2, last_insert_id = 4 }, r)
        r = assert(c:exec("UPDATE t SET v = v + 1 WHERE v >= $1", 20))
        assert.equal(3, r.affected_rows)
        r = assert(c:exec("DELETE FROM t WHERE v > 1000"))
        assert.equal(0, r.affected_rows)
        r = assert(c:exec("DELETE FROM t"))
        assert.equal(4, r.affected_rows)
        c:close()
      end)
    end)

    it("exec without parameters runs a whole script; with parameters exactly one statement", function()
      H.run(function()
        local c = connect()
        local r = assert(c:exec([[
          -- a schema file
          CREATE TABLE accounts(id serial PRIMARY KEY, owner text NOT NULL, balance int NOT NULL);
          CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            NEW.owner := upper(NEW.owner); -- a semicolon; inside the body
            RETURN NEW;
          END $$;
          CREATE TRIGGER accounts_audit BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION audit();
          INSERT INTO accounts(owner, balance) VALUES ('ann', 100), ('bob', 50);
        ]]))
        assert.equal(2, r.affected_rows)
        assert.same({ { owner = "ANN" }, { owner = "BOB" } }, assert(c:query("SELECT owner FROM accounts ORDER BY id")))
        local err
        r, err = c:exec("INSERT INTO accounts(owner, balance) VALUES ($1, 1); DROP TABLE accounts", "eve")
        assert.is_nil(r)
        assert.matches("cannot insert multiple commands into a prepared statement", err, 1, true)
        r, err = c:query("SELECT 1; SELECT 2")
        assert.is_nil(r)
        assert.matches("cannot insert multiple commands", err, 1, true)
        -- A failing script without its own BEGIN runs as one transaction: nothing of it stays.
        r, err = c:exec("CREATE TABLE a(x int); INSERT INTO nope VALUES (1); CREATE TABLE b(x int)")
        assert.is_nil(r)
        assert.matches('relation "nope" does not exist', err, 1, true)
        assert.same({}, assert(c:query("SELECT relname FROM pg_class WHERE relname IN ('a', 'b')")))
        assert.equal(2, one(c, "SELECT count(*) AS n FROM accounts").n)
        c:close()
      end)
    end)

    it("transactions commit and roll back; a failed one is reported until rolled back", function()
      H.run(function()
        local c = connect()
        assert(c:exec("CREATE TABLE tx(v int)"))
        assert(c:exec("BEGIN"))
        assert(c:exec("INSERT INTO tx VALUES ($1)", 1))
        assert(c:exec("ROLLBACK"))
        assert.equal(0, one(c, "SELECT count(*) AS n FROM tx").n)
        assert(c:exec("BEGIN"))
        assert(c:exec("INSERT INTO tx VALUES ($1)", 2))
        -- Another connection does not see it before the commit.
        local other = connect()
        assert.equal(0, one(other, "SELECT count(*) AS n FROM tx").n)
        assert(c:exec("COMMIT"))
        assert.equal(1, one(other, "SELECT count(*) AS n FROM tx").n)
        other:close()
        assert(c:exec("BEGIN"))
        assert.is_nil((c:exec("INSERT INTO tx VALUES ($1)", "not a number")))
        local r, err = c:exec("INSERT INTO tx VALUES ($1)", 3)
        assert.is_nil(r)
        assert.matches("current transaction is aborted", err, 1, true)
        assert(c:exec("ROLLBACK"))
        assert.same({ { v = 2 } }, assert(c:query("SELECT v FROM tx")))
        c:close()
      end)
    end)

    it("keeps working when the user drops prepared statements or changes a table", function()
      H.run(function()
        local c = connect()
        assert(c:exec("CREATE TABLE evolving(id int, a text)"))
        assert(c:exec("INSERT INTO evolving VALUES ($1, $2)", 1, "one"))
        local sql = "SELECT * FROM evolving WHERE id = $1"
        assert.same({ { id = 1, a = "one" } }, assert(c:query(sql, 1)))
        assert(c:exec("DEALLOCATE ALL"))
        assert.same({ { id = 1, a = "one" } }, assert(c:query(sql, 1)))
        assert(c:exec("ALTER TABLE evolving ADD COLUMN b int DEFAULT 7"))
        assert.same({ { id = 1, a = "one", b = 7 } }, assert(c:query(sql, 1)))
        assert(c:exec("DISCARD ALL"))
        assert.same({ { id = 1, a = "one", b = 7 } }, assert(c:query(sql, 1)))
        -- Many distinct statements: the cache stays bounded and all of them run.
        for i = 1, 300 do assert.equal(i, one(c, "SELECT $1 + " .. i .. " AS v", 0).v) end
        assert.is_true(one(c, "SELECT count(*) AS n FROM pg_prepared_statements").n <= 128)
        c:close()
      end, 30000)
    end)

    it("refuses COPY to or from the client clearly, and stays usable", function()
      H.run(function()
        local c = connect()
        assert(c:exec("CREATE TABLE cp(v int); INSERT INTO cp VALUES (1), (2)"))
        local r, err = c:exec("COPY cp FROM STDIN")
        assert.is_nil(r)
        assert.matches("does not support COPY FROM STDIN", err, 1, true)
        r, err = c:query("COPY cp TO STDOUT")
        assert.is_nil(r)
        assert.matches("does not support COPY TO STDOUT", err, 1, true)
        assert.equal(2, one(c, "SELECT count(*) AS n FROM cp").n)
        c:close()
      end)
    end)

    it("query_params and exec_params are aliases, also as methods", function()
      H.run(function()
        local c = connect()
        assert(c:exec_params("CREATE TABLE al(v text)"))
        assert.equal(1, c:exec_params("INSERT INTO al VALUES ($1)", "x").affected_rows)
        assert.same({ { v = "x" } }, c:query_params("SELECT v FROM al WHERE v = $1", "x"))
        assert.same({ { v = "x" } }, pg.query_params(c, "SELECT v FROM al"))
        assert.equal(1, pg.exec_params(c, "UPDATE al SET v = $1", "y").affected_rows)
        assert.same({ { v = "y" } }, c:query("SELECT v FROM al"))
        c:close()
      end)
    end)

    it("does not print server notices", function()
      local rc, out, err = H.luajit(params_src() .. [[
        local lunet, db = require("lunet"), require("lunet.postgres")
        lunet.spawn(function()
          local c = assert(db.open(P))
          assert(c:exec("DROP TABLE IF EXISTS lunet_never_there"))
          print("ok")
          c:close()
        end)
        lunet.run()
      ]])
      assert.equal(0, rc, err)
      assert.equal("ok\n", out)
      assert.is_nil(err:find("NOTICE", 1, true), err)
      assert.is_nil(err:find("skipping", 1, true), err)
    end)
  end)

  describe("garbage", function()
    it("never crashes, whatever is passed to any function in any order", function()
      local calls, raised = 0, 0
      H.run(function()
        local open_conn, closed_conn = connect(), connect()
        closed_conn:close()
        -- pool[0] is nil. Tables given to open() are connection parameters:
        -- only ones that fail fast are in the pool.
        local pool = { 0, -1.5, "SELECT 1", "x\0y", "", true, { port = 1 }, function() end, io.stdout,
          coroutine.create(function() end), open_conn, closed_conn, ("z"):rep(100000), "SELECT $1", 2 ^ 63 }
        local n = #pool
        for _, name in ipairs({ "open", "query", "exec", "query_params", "exec_params", "escape", "close" }) do
          for a = 0, n do
            for b = 0, n, 2 do
              if not (name == "close" and pool[a] == open_conn) then
                calls = calls + 1
                local res = { pcall(pg[name], pool[a], pool[b], pool[(a + b) % (n + 1)]) }
                if not res[1] then
                  raised = raised + 1
                  assert.equal("string", type(res[2]))
                elseif res[2] == nil and res[3] ~= nil then
                  assert.equal("string", type(res[3]))
                end
              end
            end
          end
        end
        -- The connection still works after all that.
        assert.equal(1, one(open_conn, "SELECT 1 AS x").x)
        open_conn:close()
      end, 120000)
      assert.is_true(calls > 500)
      assert.is_true(raised > 0)
    end)
  end)

  describe("escape", function()
    it("doubles single quotes, with or without a connection, and the server agrees", function()
      assert.equal("O''Brien", pg.escape("O'Brien"))
      assert.equal("back\\slash", pg.escape("back\\slash"))
      H.run(function()
        local c = connect()
        local nasty = "'); DROP TABLE x; -- \\ '"
        assert.equal(nasty, one(c, "SELECT '" .. c:escape(nasty) .. "' AS s").s)
        c:close()
      end)
      local ok, err = pcall(pg.escape, {})
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'postgres.escape' (string expected", err, 1, true)
    end)
  end)

  describe("concurrency", function()
    it("serves 100 coroutines on one connection", function()
      local results = {}
      H.run(function()
        local c = connect()
        local done = 0
        for i = 1, 100 do
          lunet.spawn(function()
            local rows, err = c:query("SELECT $1::int8 * 2 AS v, $2 AS s", i, "co" .. i)
            results[i] = rows and rows[1] or err
            done = done + 1
          end)
        end
        assert.is_true(eventually(function() return done == 100 end, 20000))
        c:close()
      end, 30000)
      for i = 1, 100 do assert.same({ v = i * 2, s = "co" .. i }, results[i]) end
    end)

    it("keeps each statement's own outcome when many wait on one connection (pipelined)", function()
      local results = {}
      H.run(function()
        local c = connect()
        assert(c:exec("CREATE TABLE piped(k int PRIMARY KEY, b bytea)"))
        -- Prepare the statements once, so that later ones go out in pipelines.
        assert(c:query("SELECT 10 / $1::int AS v", 1))
        assert(c:exec("INSERT INTO piped VALUES ($1, $2)", 0, "\0"))
        assert(c:query("SELECT b FROM piped WHERE k = $1", 0))
        local done = 0
        for i = 1, 200 do
          lunet.spawn(function()
            local kind = i % 4
            if kind == 0 then
              results[i] = { c:query("SELECT 10 / $1::int AS v", i % 8) } -- i % 8 == 0: division by zero
            elseif kind == 1 then
              results[i] = { c:exec("INSERT INTO piped VALUES ($1, $2)", i, "x\0" .. i) }
            elseif kind == 2 then
              results[i] = { c:exec("INSERT INTO piped VALUES ($1, $2)", -1, "dup") } -- all but the first fail
            else
              results[i] = { c:query("SELECT $1::text AS t", i % 20 == 3 and "nul\0" or "ok") }
            end
            done = done + 1
          end)
        end
        assert.is_true(eventually(function() return done == 200 end, 20000))
        for i = 1, 200, 4 do
          local row = one(c, "SELECT b FROM piped WHERE k = $1", i)
          assert.equal("x\0" .. i, row.b)
        end
        c:close()
      end, 30000)
      local dup_ok = 0
      for i = 1, 200 do
        local r, err = results[i][1], results[i][2]
        local kind = i % 4
        if kind == 0 then
          if i % 8 == 0 then
            assert.is_nil(r)
            assert.matches("division by zero", err, 1, true)
          else
            assert.same({ { v = math.floor(10 / (i % 8)) } }, r)
          end
        elseif kind == 1 then
          assert.same({ affected_rows = 1, last_insert_id = 0 }, r)
        elseif kind == 2 then
          if r then dup_ok = dup_ok + 1 else assert.matches("duplicate key value", err, 1, true) end
        elseif i % 20 == 3 then
          assert.is_nil(r)
          assert.matches("contains a NUL byte", err, 1, true)
        else
          assert.same({ { t = "ok" } }, r)
        end
      end
      assert.equal(1, dup_ok)
    end)

    it("reports a failed commit (deferred constraint) for its own statement, also when pipelined", function()
      local results = {}
      H.run(function()
        local c = connect()
        assert(c:exec("CREATE TABLE deferred(k int, CONSTRAINT deferred_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)"))
        assert(c:exec("INSERT INTO deferred VALUES ($1)", 1))
        local r, err = c:exec("INSERT INTO deferred VALUES ($1)", 1)
        assert.is_nil(r)
        assert.matches('duplicate key value violates unique constraint "deferred_k"', err, 1, true)
        local done = 0
        for i = 1, 30 do
          lunet.spawn(function()
            results[i] = { c:exec("INSERT INTO deferred VALUES ($1)", i % 3) }
            done = done + 1
          end)
        end
        assert.is_true(eventually(function() return done == 30 end, 20000))
        -- Exactly the statements that committed are in the table.
        local ok = 0
        for i = 1, 30 do if results[i][1] then ok = ok + 1 end end
        assert.equal(1 + ok, one(c, "SELECT count(*) AS n FROM deferred").n)
        assert.same({ { n = 1 }, { n = 1 }, { n = 1 } },
          assert(c:query("SELECT count(*) AS n FROM deferred GROUP BY k ORDER BY k")))
        c:close()
      end, 30000)
      for i = 1, 30 do
        if not results[i][1] then assert.matches("duplicate key value", results[i][2], 1, true) end
      end
    end)

    it("runs 8 connections in parallel", function()
      local spans, answers = {}, {}
      for i = 1, 8 do answers[i] = {} end
      H.run(function()
        local conns = {}
        for i = 1, 8 do conns[i] = connect() end
        local done = 0
        for i = 1, 8 do
          lunet.spawn(function()
            -- Server-side timestamps: when each statement started and ended.
            local row = one(conns[i], [[SELECT extract(epoch FROM clock_timestamp()) AS t0,
              (SELECT true FROM pg_sleep(0.3)) AS slept, extract(epoch FROM clock_timestamp()) AS t1, $1::int AS i]], i)
            spans[i] = row
            for k = 1, 10 do answers[i][k] = one(conns[i], "SELECT $1::int * 100 + $2 AS v", i, k).v end
            done = done + 1
          end)
        end
        assert.is_true(eventually(function() return done == 8 end, 20000))
        for i = 1, 8 do conns[i]:close() end
      end, 30000)
      for i = 1, 8 do
        for k = 1, 10 do assert.equal(i * 100 + k, answers[i][k]) end
      end
      -- At least two statements were sleeping on the server at the same time.
      local overlapping = false
      for i = 1, 8 do
        for j = i + 1, 8 do
          if spans[i].t0 < spans[j].t1 and spans[j].t0 < spans[i].t1 then overlapping = true end
        end
      end
      assert.is_true(overlapping, "no two statements ran at the same time")
    end)

    it("keeps the loop ticking during SELECT pg_sleep(1)", function()
      local ticks, row = 0, nil
      H.run(function()
        local c = connect()
        local done = false
        lunet.spawn(function()
          while not done do ticks = ticks + 1; lunet.sleep(1) end
        end)
        row = one(c, "SELECT (SELECT true FROM pg_sleep(1)) AS slept")
        done = true
        c:close()
      end)
      assert.is_true(row.slept)
      assert.is_true(ticks >= 50, ("only %d ticks during a 1 s statement"):format(ticks))
    end)

    it("close during a running statement returns at once and cancels the statement", function()
      local ticks, ticks_at_close, ticks_at_result, result = 0, nil, nil, nil
      local live_before_close, live_after_close, before
      local done = false
      finally(function() done = true end) -- stop the ticker even if an assertion fails
      H.run(function()
        before = pg._connections()
        local c, observer = connect(), connect()
        local pid = one(c, "SELECT pg_backend_pid() AS pid").pid
        lunet.spawn(function()
          while not done do ticks = ticks + 1; lunet.sleep(1) end
        end)
        lunet.spawn(function()
          result = { c:query("SELECT pg_sleep(30)") }
          ticks_at_result = ticks
        end)
        -- A second statement queued behind it sees the close instead of running.
        local queued
        lunet.spawn(function() queued = { c:query("SELECT 1 AS one") } end)
        assert.is_true(eventually(function()
          return one(observer, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int AND state = 'active'", pid).n == 1
        end))
        live_before_close = pg._connections()
        c:close()
        -- close returned while the connection was still open: it did not wait for anything.
        live_after_close = pg._connections()
        ticks_at_close = ticks
        assert.is_nil(ticks_at_result)
        local r, err = c:query("SELECT 1")
        assert.is_nil(r)
        assert.equal("connection is closed", err)
        assert.is_true(eventually(function() return ticks_at_result ~= nil and queued ~= nil end, 15000))
        assert.same({ nil, "connection is closed" }, queued)
        -- The connection is gone, on the server too, long before the 30 s statement would have ended.
        -- (<=: connections closed by earlier tests may finish closing meanwhile)
        assert.is_true(eventually(function() return pg._connections() <= before + 1 end, 15000))
        assert.is_true(eventually(function()
          return one(observer, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int", pid).n == 0
        end, 15000))
        done = true
        observer:close()
      end, 25000)
      assert.equal(live_before_close, live_after_close)
      assert.is_nil(result[1])
      assert.matches("canceling statement due to user request", result[2], 1, true)
      assert.is_true(ticks_at_result > ticks_at_close, "the loop did not run between close and the result")
    end)

    it("closes connections the script dropped (finaliser), on the server too", function()
      H.run(function()
        local observer = connect()
        local function backends()
          return one(observer, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1", DBNAME).n
        end
        -- Connections closed by earlier tests may take a moment to go away.
        collectgarbage("collect")
        eventually(function() return pg._connections() == 1 end, 2000)
        eventually(function() return backends() == pg._connections() end, 2000)
        local before = backends()
        for _ = 1, 5 do
          local c = connect()
          one(c, "SELECT 1 AS x")
        end
        assert.equal(before + 5, backends())
        collectgarbage("collect")
        collectgarbage("collect")
        assert.is_true(eventually(function() return backends() == before end),
          "dropped connections still open on the server")
        observer:close()
      end)
    end)

  end)

  describe("faults", function()
    -- The backend process id of `c`.
    local function backend(c) return one(c, "SELECT pg_backend_pid() AS pid").pid end

    it("pg_cancel_backend on a running statement: nil, err; the connection stays usable", function()
      H.run(function()
        local c, killer = connect(), connect()
        local pid = backend(c)
        lunet.spawn(function()
          -- Wait until the statement is really running, then cancel it.
          assert(eventually(function()
            return one(killer, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int AND state = 'active'", pid).n == 1
          end))
          assert.is_true(one(killer, "SELECT pg_cancel_backend($1::int) AS ok", pid).ok)
        end)
        local rows, err = c:query("SELECT pg_sleep(30)")
        assert.is_nil(rows)
        assert.matches("canceling statement due to user request", err, 1, true)
        assert.equal(pid, backend(c))
        assert.equal(1, one(c, "SELECT 1 AS one").one)
        c:close()
        killer:close()
      end, 20000)
    end)

    it("the backend terminated during a statement (a server restart): nil, err, then 'connection is broken'", function()
      H.run(function()
        local c, killer = connect(), connect()
        local pid = backend(c)
        lunet.spawn(function()
          assert(eventually(function()
            return one(killer, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int AND state = 'active'", pid).n == 1
          end))
          assert.is_true(one(killer, "SELECT pg_terminate_backend($1::int) AS ok", pid).ok)
        end)
        local rows, err = c:query("SELECT pg_sleep(30)")
        assert.is_nil(rows)
        assert.matches("terminating connection due to administrator command", err, 1, true)
        -- The connection does not pretend to work, and is not silently reopened.
        for _, f in ipairs({ c.query, c.exec }) do
          local r, e = f(c, "SELECT 1")
          assert.is_nil(r)
          assert.matches("^connection is broken: ", e)
          assert.matches("terminating connection due to administrator command", e, 1, true)
        end
        c:close()
        -- A new open works.
        local fresh = connect()
        assert.is_true(backend(fresh) ~= pid)
        fresh:close()
        killer:close()
      end, 20000)
    end)

    it("the backend terminated while idle: the next statement fails clearly", function()
      H.run(function()
        local c, killer = connect(), connect()
        local pid = backend(c)
        assert.is_true(one(killer, "SELECT pg_terminate_backend($1::int) AS ok", pid).ok)
        assert(eventually(function()
          return one(killer, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int", pid).n == 0
        end))
        local r, err = c:exec("INSERT INTO nowhere VALUES ($1)", 1)
        assert.is_nil(r)
        assert.equal("string", type(err))
        r, err = c:query("SELECT 1")
        assert.is_nil(r)
        assert.matches("^connection is broken: ", err)
        c:close()
        local fresh = connect()
        assert.equal(1, one(fresh, "SELECT 1 AS one").one)
        fresh:close()
        killer:close()
      end, 20000)
    end)
  end)
end)
