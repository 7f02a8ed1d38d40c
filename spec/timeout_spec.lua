-- Every kind of wait ends early the same ways: a per-handle time limit
-- (where the handle has one), lunet.deadline, task:cancel, and closing the
-- handle it waits on (where there is one). Each way gives the documented
-- values, the handle stays usable afterwards, and nothing is left behind:
-- registered waits, open descriptors and (debug build) coroutine references
-- are back where they started.
local H = require("spec.helper")
local lunet = H.lunet
local socket = require("lunet.socket")
local udp = require("lunet.udp")
local fs = require("lunet.fs")
local signal = require("lunet.signal")
local pack = H.pack

local TIMEOUT2 = { n = 2, nil, "timeout" }
local CANCELLED = { n = 2, false, "cancelled" }

local function listener(opts)
  local l = assert(socket.listen("tcp", "127.0.0.1", 0, opts))
  local _, port = socket.getsockname(l)
  return l, port
end

-- An accepted server end and a connected client end (inside a task).
local function tcp_pair()
  local l, port = listener()
  local acc = lunet.spawn(socket.accept, l)
  local client = assert(socket.connect("127.0.0.1", port))
  local _, server = acc:join()
  socket.close(l)
  return assert(server), client
end

-- Reads from `conn` until `n` bytes arrived; returns how many did.
local function drain(conn, n)
  local got = 0
  while got < n do
    local d = socket.read(conn)
    if not d then break end
    got = got + #d
  end
  return got
end

local CHUNK = ("w"):rep(256 * 1024)

-- A connect to a local listener completes at once: only a limit of 0 ms
-- (or a cancellation before the loop runs) ends it early.
local function connect_kind(name, host)
  return {
    name = name,
    ms = 0,
    setup = function() local l, port = listener(); return { l = l, port = port } end,
    wait = function(c) return socket.connect(host, c.port, c.opts) end,
    limit = function(c, ms) c.opts = { timeout = ms } end,
    cleanup = function(c) socket.close(c.l) end,
  }
end

-- The kinds of wait. Each: setup() -> ctx; wait(ctx) starts one wait that
-- does not end on its own; limit(ctx, ms) sets the handle's own time limit;
-- close(ctx) closes the handle it waits on (closed: what the waiter gets);
-- timed_out: what a timeout returns (default nil, "timeout"); usable(ctx)
-- checks the handle still works after a timeout or cancellation; cleanup(ctx).
-- ms: the time limit used (0 for waits that would complete at once).
local kinds = {
  {
    name = "sleep",
    wait = function() return lunet.sleep(60000) end,
  },
  {
    name = "accept",
    setup = function() local l, port = listener(); return { l = l, port = port } end,
    wait = function(c) return socket.accept(c.l) end,
    limit = function(c, ms) socket.settimeout(c.l, ms) end,
    close = function(c) socket.close(c.l) end,
    closed = { n = 2, nil, "listener closed" },
    usable = function(c)
      socket.settimeout(c.l, nil)
      local t = lunet.spawn(socket.connect, "127.0.0.1", c.port)
      local conn = assert(socket.accept(c.l))
      local _, client = t:join()
      socket.close(conn); socket.close(client)
    end,
    cleanup = function(c) socket.close(c.l) end,
  },
  connect_kind("connect", "127.0.0.1"),
  connect_kind("connect with a name lookup", "localhost"),
  {
    name = "read",
    setup = function() local s, cl = tcp_pair(); return { s = s, c = cl } end,
    wait = function(c) return socket.read(c.s) end,
    limit = function(c, ms) socket.settimeout(c.s, ms) end,
    close = function(c) socket.close(c.s) end,
    closed = { n = 2, nil, "socket closed" },
    usable = function(c)
      socket.settimeout(c.s, nil)
      assert.is_nil(socket.write(c.c, "after"))
      assert.equal("after", socket.read(c.s))
    end,
    cleanup = function(c) socket.close(c.s); socket.close(c.c) end,
  },
  {
    name = "write",
    setup = function() local s, cl = tcp_pair(); return { s = s, c = cl, sent = 0 } end,
    -- Writes until the peer (which never reads) stops taking bytes.
    wait = function(c)
      while true do
        c.sent = c.sent + #CHUNK
        local err = socket.write(c.c, CHUNK)
        if err then return err end
      end
    end,
    limit = function(c, ms) socket.settimeouts(c.c, nil, ms, nil) end,
    timed_out = { n = 1, "timeout" },
    close = function(c) socket.close(c.c) end,
    closed = { n = 1, "socket closed" },
    -- The write that ended early goes on in the background: every byte arrives.
    usable = function(c)
      socket.settimeouts(c.c, nil, nil, nil)
      assert.equal(c.sent, drain(c.s, c.sent))
      assert.is_nil(socket.write(c.c, "end"))
      assert.equal("end", socket.read(c.s))
    end,
    cleanup = function(c) socket.close(c.s); socket.close(c.c) end,
  },
  {
    name = "udp recv",
    setup = function()
      local h = assert(udp.bind("127.0.0.1", 0))
      local _, port = udp.getsockname(h)
      return { h = h, port = port }
    end,
    wait = function(c) return udp.recv(c.h) end,
    limit = function(c, ms) udp.settimeout(c.h, ms) end,
    timed_out = { n = 3, nil, nil, "timeout" },
    close = function(c) udp.close(c.h) end,
    closed = { n = 3, nil, nil, "udp closed" },
    usable = function(c)
      udp.settimeout(c.h, nil)
      local from = assert(udp.bind("127.0.0.1", 0))
      assert(udp.send(from, "127.0.0.1", c.port, "dgram"))
      assert.equal("dgram", (udp.recv(c.h)))
      udp.close(from)
    end,
    cleanup = function(c) udp.close(c.h) end,
  },
  {
    name = "fs.read",
    ms = 0,
    setup = function()
      local path = os.tmpname()
      local f = assert(io.open(path, "wb")); f:write("0123456789"); f:close()
      return { path = path, fd = assert(fs.open(path, "r")) }
    end,
    wait = function(c) return fs.read(c.fd, 4) end,
    usable = function(c)
      local d = fs.read(c.fd, 10)
      assert.is_string(d)
      assert.is_truthy(("0123456789"):find(d, 1, true))
    end,
    cleanup = function(c) assert.is_nil(fs.close(c.fd)); os.remove(c.path) end,
  },
  {
    name = "fs.open",
    ms = 0,
    setup = function() return { path = os.tmpname() } end,
    -- A descriptor opened after its wait ended is closed by lunet.
    wait = function(c)
      local fd, err = fs.open(c.path, "r")
      if fd then fs.close(fd) end
      return fd, err
    end,
    cleanup = function(c) os.remove(c.path) end,
  },
  {
    name = "signal.wait",
    wait = function() return signal.wait("USR2") end,
  },
  {
    name = "join",
    setup = function() return { t = lunet.spawn(lunet.sleep, 60000) } end,
    wait = function(c) return c.t:join(c.ms) end,
    limit = function(c, ms) c.ms = ms end,
    -- The joined task is not affected by its joiner's end.
    usable = function(c) assert.equal("waiting", c.t:status()) end,
    cleanup = function(c) c.t:cancel(); assert.same(CANCELLED, pack(c.t:join())) end,
  },
}

local function noop() end

-- What is left behind: registered waits, open descriptors, references.
local function snapshot()
  -- Sockets and files: what an early end could leak. Pipes and anon inodes
  -- are the event loop's own (libuv makes its signal pipe on first use; the
  -- descriptor counter's own popen pipe) and are left out.
  local targets, fds = H.fd_targets(), 0
  for _, target in pairs(targets) do
    if not target:match("^pipe:") and not target:match("^anon_inode:") then fds = fds + 1 end
  end
  return { pending = lunet._pending(), fds = fds, targets = targets, balance = H.trace_balance() }
end

-- Runs `scenario` (in H.run) once to warm up, then three times more, and
-- checks that nothing grew.
-- Work an earlier early end left on the thread pool (an abandoned file open
-- or name lookup) may still open or close a descriptor: let it finish.
local function pool_quiet()
  H.run(function()
    assert(H.eventually(function() return not lunet._pool_busy() end, 10000), "thread pool still busy")
  end)
end

local function leaves_nothing(scenario)
  H.run(scenario)
  pool_quiet()
  local before = snapshot()
  for _ = 1, 3 do H.run(scenario) end
  local after
  pool_quiet()
  -- Descriptors are closed by libuv's close callbacks: give them a moment
  -- (a loaded machine can take seconds).
  H.run(function()
    H.eventually(function() return snapshot().fds <= before.fds end, 10000)
  end, 15000)
  after = snapshot()
  assert.equal(before.pending, after.pending, "waits left registered")
  assert.equal(before.balance, after.balance, "coroutine references left taken")
  -- (<=: descriptors closed by earlier tests may finish closing meanwhile)
  local new = {}
  for fd, target in pairs(after.targets) do
    if before.targets[fd] ~= target then new[#new + 1] = fd .. " -> " .. target end
  end
  assert.is_true(after.fds <= before.fds, ("descriptors: %d before, %d after (new: %s)")
    :format(before.fds, after.fds, table.concat(new, ", ")))
end

-- One early end of one wait of `kind`: `how(kind, ctx)` returns the results.
local function ends_early(kind, how, expected, check_usable)
  leaves_nothing(function()
    local ctx = (kind.setup or noop)() or {}
    local r = pack(how(kind, ctx))
    assert.same(expected, r)
    if check_usable and kind.usable then kind.usable(ctx) end
    if kind.cleanup then kind.cleanup(ctx) end
  end)
end

-- The results of a task that returned (not raised).
local function returned(ok, ...)
  assert.is_true(ok, tostring((...)))
  return ...
end

local ways = {
  {
    name = "times out by its handle's own limit",
    applies = function(kind) return kind.limit end,
    how = function(kind, ctx)
      kind.limit(ctx, kind.ms or 20)
      return kind.wait(ctx)
    end,
    expected = function(kind) return kind.timed_out or TIMEOUT2 end,
    usable = true,
  },
  {
    name = "times out under lunet.deadline",
    applies = function() return true end,
    how = function(kind, ctx)
      lunet.sleep(0) -- a fresh loop clock (see task_spec "times count from the call")
      local t0 = H.now_ms()
      local r = pack(lunet.deadline(kind.ms or 20, kind.wait, ctx))
      assert.is_true(H.now_ms() - t0 >= (kind.ms or 20) - 1)
      return unpack(r, 1, r.n)
    end,
    expected = function(kind) return kind.timed_out or TIMEOUT2 end,
    usable = true,
  },
  {
    name = "is cancelled by task:cancel",
    applies = function() return true end,
    how = function(kind, ctx)
      local t = lunet.spawn(kind.wait, ctx)
      assert.equal("waiting", t:status())
      t:cancel()
      return t:join()
    end,
    expected = function() return CANCELLED end,
    usable = true,
  },
  {
    name = "fails when its handle is closed while it waits",
    applies = function(kind) return kind.close end,
    how = function(kind, ctx)
      local t = lunet.spawn(kind.wait, ctx)
      assert.equal("waiting", t:status())
      kind.close(ctx)
      return returned(t:join())
    end,
    expected = function(kind) return kind.closed end,
  },
}

-- Descriptors some facilities open once per process, on first use (glibc's
-- resolver, libuv's signal pipe), possibly on a pool thread after the wait
-- that used them ended: opened here, before anything is counted.
setup(function()
  H.run(function()
    local l, port = listener()
    local t = lunet.spawn(socket.accept, l)
    socket.close(assert(socket.connect("localhost", port)))
    socket.close(select(2, t:join()))
    socket.close(l)
    lunet.deadline(1, signal.wait, "USR2")
  end)
end)

for _, kind in ipairs(kinds) do
  describe(kind.name, function()
    for _, way in ipairs(ways) do
      if way.applies(kind) then
        it(way.name .. ", leaving nothing behind", function()
          ends_early(kind, way.how, way.expected(kind), way.usable)
        end)
      end
    end
  end)
end

describe("per-handle limits", function()
  it("socket.listen's opts.timeout limits each accept", function()
    H.run(function()
      local l = listener({ timeout = 10 })
      assert.same(TIMEOUT2, pack(socket.accept(l)))
      assert.same(TIMEOUT2, pack(socket.accept(l)))
      socket.close(l)
    end)
  end)

  it("settimeouts sets connect, send and read separately", function()
    H.run(function()
      local s, c = tcp_pair()
      socket.settimeouts(s, nil, nil, 10) -- read only
      assert.same(TIMEOUT2, pack(socket.read(s)))
      socket.settimeouts(s, 10, 10, nil) -- no read limit: the read waits for its data
      local t = lunet.spawn(socket.read, s)
      lunet.sleep(30)
      assert.equal("waiting", t:status())
      assert.is_nil(socket.write(c, "data"))
      assert.same({ n = 2, true, "data" }, pack(t:join()))
      socket.close(s); socket.close(c)
    end)
  end)

  it("bad times raise", function()
    H.run(function()
      local l = listener()
      local u = assert(udp.bind("127.0.0.1", 0))
      for _, ms in ipairs({ -1, 0 / 0, math.huge, 2 ^ 54, "10", {} }) do
        assert.has_error(function() socket.settimeout(l, ms) end)
        assert.has_error(function() socket.settimeouts(l, ms, nil, nil) end)
        assert.has_error(function() socket.settimeouts(l, nil, nil, ms) end)
        assert.has_error(function() udp.settimeout(u, ms) end)
        assert.has_error(function() socket.listen("tcp", "127.0.0.1", 0, { timeout = ms }) end)
        assert.has_error(function() socket.connect("127.0.0.1", 1, { timeout = ms }) end)
      end
      socket.close(l); udp.close(u)
    end)
  end)

  it("a value that is not a handle gets nil, err (what a call acts on never raises)", function()
    H.run(function()
      for _, h in ipairs({ nil, 5, "x", {}, assert(udp.bind("127.0.0.1", 0)) }) do
        assert.same({ nil, "invalid socket handle" }, { socket.settimeout(h, 10) })
        assert.same({ nil, "invalid socket handle" }, { socket.settimeouts(h, nil, 10, 10) })
      end
      local l = listener()
      assert.same({ nil, "invalid udp handle" }, { udp.settimeout(l, 10) })
      assert.same({ nil, "invalid udp handle" }, { udp.settimeout(nil, 10) })
      socket.close(l)
      assert.equal(0, select("#", socket.settimeout(l, 10))) -- closed: nothing to do
    end)
  end)

  it("a limit that did not fire does not keep lunet.run going", function()
    -- The read gets its data long before its 30 s limit; run must then
    -- return (the process is killed after 10 s if it does not).
    local rc, out, err = H.lunet_run([[
      local lunet = require("lunet")
      local socket = require("lunet.socket")
      local l = socket.listen("tcp", "127.0.0.1", 0)
      local _, port = l:getsockname()
      lunet.spawn(function()
        local s = socket.accept(l)
        socket.settimeout(s, 30000)
        print("read", socket.read(s))
        s:close(); l:close()
      end)
      lunet.spawn(function()
        local c = socket.connect("127.0.0.1", port)
        lunet.sleep(5)
        c:write("hi"); c:close()
      end)
      lunet.run()
      print("run returned")
    ]], nil, 10)
    assert.equal(0, rc, err)
    assert.equal("read\thi\nrun returned\n", out)
  end)

  it("a sleep cancelled from the main chunk does not keep lunet.run going", function()
    local rc, out, err = H.lunet_run([[
      local lunet = require("lunet")
      local t = lunet.spawn(function() lunet.sleep(30000) end)
      t:cancel()
      lunet.run()
      print("run returned", t:status())
    ]], nil, 10)
    assert.equal(0, rc, err)
    assert.equal("run returned\tcancelled\n", out)
  end)
end)

-- Database statements: the wait ends with nil, "timeout" / "cancelled", the
-- statement is interrupted (sqlite3_interrupt, PQcancel, KILL QUERY), and the
-- connection answers the next statement.
describe("database statements", function()
  -- How long the next statement may take when the long one was interrupted:
  -- far below what the long one would run on its own.
  local NEXT_LIMIT = 5000

  local function next_statement_works(conn, sql, expected)
    local rows, err = lunet.deadline(NEXT_LIMIT, conn.query, conn, sql)
    assert.is_not_equal("timeout", err, "the long statement was not interrupted: the connection is still busy with it")
    assert.same(expected, rows, tostring(err))
  end

  -- `db`: { open = fn -> conn, slow = SQL that runs far longer than NEXT_LIMIT,
  -- running(side, id) -> bool (seen from the connection `side`: is the slow
  -- statement of the connection with server id `id` still running?) }
  -- Server-side id of each connection.
  local server_id = setmetatable({}, { __mode = "k" })

  local function db_cases(name, db)
    describe(name, function()
      local function slow_ends(early)
        local conn, side
        -- A failed test must not leave its statement holding a pool thread.
        finally(function()
          if conn then conn:close() end
          if side then side:close() end
        end)
        H.run(function()
          conn = db.open()
          side = db.running and db.open()
          local r = pack(early(function() return conn:query(db.slow) end))
          local ok = r[1] == nil and r[2] == "timeout" or r[1] == false and r[2] == "cancelled"
          assert.is_true(ok, ("got %s, %s"):format(tostring(r[1]), tostring(r[2])))
          if db.running then
            assert.is_true(H.eventually(function() return not db.running(side, server_id[conn]) end, NEXT_LIMIT),
              "the statement still runs on the server")
          end
          next_statement_works(conn, "SELECT 1 AS one", { { one = 1 } })
        end, 6 * NEXT_LIMIT)
      end

      it("a statement under lunet.deadline returns nil, 'timeout' and is interrupted", function()
        slow_ends(function(q) return lunet.deadline(100, q) end)
      end)

      it("a statement in a cancelled task returns false, 'cancelled' and is interrupted", function()
        slow_ends(function(q)
          local t = lunet.spawn(q)
          lunet.sleep(100)
          t:cancel()
          return t:join()
        end)
      end)
    end)
  end

  db_cases("sqlite3", {
    open = function() return assert(require("lunet.sqlite3").open()) end,
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 60000000) SELECT count(*) AS n FROM c",
  })

  local pg = require("lunet.postgres")
  local PG = {
    host = "127.0.0.1", port = 5432, database = "postgres",
    user = os.getenv("LUNET_DB_USER") or "postgres",
  }
  db_cases("postgres", {
    open = function()
      local conn = assert(pg.open(PG))
      server_id[conn] = conn:query("SELECT pg_backend_pid() AS pid")[1].pid
      return conn
    end,
    slow = "SELECT pg_sleep(20)",
    running = function(side, pid)
      local rows = assert(side:query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int AND query LIKE 'SELECT pg_sleep%' AND state = 'active'",
        pid))
      return rows[1].n > 0
    end,
  })

  local mysql = require("lunet.mysql")
  local MY = { host = "127.0.0.1", port = 3306, user = "root", password = "", database = "test" }
  db_cases("mysql", {
    open = function()
      local conn = assert(mysql.open(MY))
      server_id[conn] = conn:query("SELECT CONNECTION_ID() AS id")[1].id
      return conn
    end,
    slow = "SELECT SLEEP(20) AS slept",
    running = function(side, id)
      local rows = assert(side:query(
        "SELECT count(*) AS n FROM information_schema.processlist WHERE id = ? AND info LIKE 'SELECT SLEEP%'", id))
      return rows[1].n > 0
    end,
  })
end)
