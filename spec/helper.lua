-- Shared helper for the busted specs: puts the built modules on the module
-- path (LUNET_BUILD, default build/release), runs the loop with a time limit,
-- and runs subprocesses.
local M = {}

M.build = os.getenv("LUNET_BUILD") or "build/release"
M.root = os.getenv("PWD") or "."
if not package.cpath:find(M.build .. "/?.so", 1, true) then
  package.cpath = M.build .. "/?.so;" .. M.build .. "/test/?.so;" .. package.cpath
end
if not package.path:find(M.build .. "/?.lua", 1, true) then
  package.path = M.build .. "/?.lua;" .. package.path
end

local lunet = require("lunet")
M.lunet = lunet

local lt = require("lunet.test")

--- Runs `body` in a task with lunet.test.run (what users' specs use), and
-- then checks that nothing it started is still parked in a lunet wait (open
-- listeners or connections may stay open: they are not waits).
-- Fails (raises in the calling test) if the body raised (with its traceback),
-- if it does not return within `limit_ms` (default 10 s), or if what it
-- started is still parked `limit_ms` after the start; lunet.test.run then
-- cancels whatever is left.
function M.run(body, limit_ms)
  limit_ms = limit_ms or 10000
  local t0 = M.now_ms()
  local ok, err = pcall(lt.run, function()
    -- One turn first, so that lunet.test's own joiner is parked and counted.
    lunet.sleep(0)
    local parked_before = lunet._pending()
    local done, e = xpcall(body, debug.traceback)
    if not done then error(e, 0) end
    while lunet._pending() > parked_before do
      if M.now_ms() - t0 >= limit_ms then
        error(("%d coroutine(s) left parked in lunet waits"):format(lunet._pending() - parked_before), 0)
      end
      lunet.sleep(1)
    end
  end, limit_ms + 1000)
  if ok then return end
  if err == "timeout" then err = ("test did not finish within %d ms"):format(limit_ms) end
  error(err, 0)
end

local clock = require("bench.clock")

--- Polls `cond` with short sleeps until it is true (returns true) or `max_ms`
-- (default 5000) of waiting have passed (returns false). From a coroutine; for
-- things finished by fire-and-forget work.
function M.eventually(cond, max_ms)
  local waited = 0
  while not cond() do
    if waited >= (max_ms or 5000) then return false end
    lunet.sleep(5)
    waited = waited + 5
  end
  return true
end

--- Monotonic time in milliseconds (for lower-bound checks, never upper bounds).
function M.now_ms()
  return clock() * 1000
end

--- The number of open file descriptors of this process (plus a constant one
-- for the listing itself).
function M.open_fds()
  local n = 0
  local p = io.popen("ls /proc/" .. M.pid() .. "/fd")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

--- What the open descriptors point at ("3 -> socket:[123]", ...), for
-- messages about descriptors left open.
function M.fd_targets()
  local t = {}
  local p = io.popen("ls -l /proc/" .. M.pid() .. "/fd 2>/dev/null")
  for line in p:lines() do
    local fd, target = line:match("(%d+) %-> (.*)$")
    if fd then t[fd] = target end
  end
  p:close()
  return t
end

--- The trace counters' difference (references taken - released); 0 on
-- release builds.
function M.trace_balance()
  local t = lunet._trace()
  return t.taken - t.released
end

--- Packs results with their count (nils included).
function M.pack(...)
  return { n = select("#", ...), ... }
end

--- This process's id.
function M.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  return tonumber(pid)
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  os.remove(path)
  return s
end

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shquote = shquote

--- Runs a shell command; returns exit code, stdout, stderr.
function M.sh(cmd)
  local out, err, rc = os.tmpname(), os.tmpname(), os.tmpname()
  os.execute(("(%s) >%s 2>%s </dev/null; echo $? >%s"):format(cmd, out, err, rc))
  return tonumber(slurp(rc)), slurp(out), slurp(err)
end

local certs_dir
--- Makes throw-away TLS certificates for this run (scripts/gen-test-certs.sh,
-- once per process) and returns their folder.
function M.test_certs()
  if not certs_dir then
    local dir = os.tmpname() .. "-certs"
    local rc, _, err = M.sh("scripts/gen-test-certs.sh " .. dir)
    assert(rc == 0, "gen-test-certs.sh failed: " .. tostring(err))
    certs_dir = dir
  end
  return certs_dir
end

--- Writes `source` to a temporary .lua file and returns its path.
function M.script(source)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "wb"))
  f:write(source)
  f:close()
  return path
end

--- Runs Lua `source` with the built launcher; returns exit code, stdout, stderr.
-- With `limit_s`, the process is killed after that many seconds (exit code
-- 137), so a script that fails by never ending fails its spec instead of
-- hanging the run.
function M.lunet_run(source, args, limit_s)
  local path = M.script(source)
  local prefix = limit_s and ("timeout -s KILL %d "):format(limit_s) or ""
  local rc, out, err = M.sh(("%s%s/lunet-run %s %s"):format(prefix, M.build, args or "", shquote(path)))
  os.remove(path)
  return rc, out, err
end

--- Runs Lua `source` with plain luajit, the build folder on package.cpath.
function M.luajit(source)
  local path = M.script(("package.cpath = %q .. package.cpath\n"):format(M.build .. "/?.so;" .. M.build .. "/test/?.so;") .. source)
  local rc, out, err = M.sh("luajit " .. shquote(path))
  os.remove(path)
  return rc, out, err
end

-- Database driver checks run in a child process, so that a crash or an abort
-- fails the spec instead of killing busted. `fields` is Lua source for a
-- table of `open` parameters; `driver` a module name such as "lunet.mysql".

--- Calls `driver.open(t)`, `t` holding `fields` with a metatable whose
-- `__index` raises (`how` = "raises") or yields (`how` = "yields"); then,
-- given a connection, `driver.query(conn, "SELECT 1", t2)` with such a table
-- as a parameter. Returns exit code, stdout, stderr; stdout says what open
-- and query did, how often the metamethod ran, and "done" at the end.
function M.trapped_open(driver, fields, how)
  return M.luajit(([[
    local lunet, db = require("lunet"), require(%q)
    local how, runs = %q, 0
    local function trapped(t)
      return setmetatable(t, { __index = function()
        runs = runs + 1
        if how == "raises" then error("__index ran") end
        coroutine.yield()
      end })
    end
    local function outcome(ok, v, err)
      if not ok then return "raised " .. tostring(v) end
      if v == nil then return "returned nil, " .. tostring(err) end
      return "returned a " .. type(v)
    end
    lunet.spawn(function()
      local ok, c, err = pcall(db.open, trapped(%s))
      print("open " .. outcome(ok, c, err))
      if ok and c then
        print("query with a trapped parameter " .. outcome(pcall(db.query, c, "SELECT 1", trapped({}))))
        db.close(c)
      end
      print("__index ran " .. runs .. " times")
    end)
    lunet.run()
    print("done")
  ]]):format(driver, how, fields))
end

--- The spec of `trapped_open` shared by the drivers: the process survives,
-- `open` reads the table's own fields (it connects) without ever running the
-- metamethod, and a trapped table as a parameter is refused with the usual
-- argument error, again without running it.
function M.check_trapped_open(driver, fields, how)
  local expect = require("luassert")
  local rc, out, err = M.trapped_open(driver, fields, how)
  expect.equal(0, rc, err)
  local name = driver:match("^lunet%.(.+)$")
  expect.equal(table.concat({
    "open returned a userdata",
    "query with a trapped parameter raised bad argument #3 to '" .. name
      .. ".query' (parameter 1 must be nil, boolean, number or string, got table)",
    "__index ran 0 times",
    "done",
  }, "\n") .. "\n", (out:gsub("raised [^\n]-: bad argument", "raised bad argument")))
end

--- Runs `query`, `exec`, `query_params` and `exec_params` with empty SQL and
-- with blank SQL (" "), without parameters and with one, on a connection
-- opened with `fields`. Returns exit code, results, stderr: results maps
-- "<function>/<number of parameters>" to { [""] = what empty SQL gave,
-- [" "] = what blank SQL gave }, each "rows <n>", "affected <n>" or
-- "nil, <err>".
function M.empty_sql(driver, fields)
  local rc, out, err = M.luajit(([[
    local lunet, db = require("lunet"), require(%q)
    lunet.spawn(function()
      local c = assert(db.open(%s))
      for _, name in ipairs({ "query", "exec", "query_params", "exec_params" }) do
        for _, sql in ipairs({ "", " " }) do
          for n = 0, 1 do
            local r, e = db[name](c, sql, unpack({ 1 }, 1, n))
            local what = r == nil and "nil, " .. tostring(e)
              or r.affected_rows and "affected " .. r.affected_rows or "rows " .. #r
            print(("%%s/%%d|%%s|%%s"):format(name, n, sql, what))
          end
        end
      end
      db.close(c)
    end)
    lunet.run()
  ]]):format(driver, fields))
  local results = {}
  for key, sql, what in out:gmatch("([%w_]+/%d)|([^|]*)|([^\n]*)\n") do
    results[key] = results[key] or {}
    results[key][sql] = what
  end
  return rc, results, err
end

--- What `empty_sql` returns where empty and blank SQL are a statement that
-- does nothing (SQLite, PostgreSQL): no rows, no changes, and no placeholder
-- for a parameter.
M.EMPTY_SQL_DOES_NOTHING = {}
do
  local mismatch = "nil, parameter count mismatch: the statement has 0 placeholders, 1 value was given"
  for _, name in ipairs({ "query", "exec", "query_params", "exec_params" }) do
    local none = name:match("^query") and "rows 0" or "affected 0"
    M.EMPTY_SQL_DOES_NOTHING[name .. "/0"] = { [""] = none, [" "] = none }
    M.EMPTY_SQL_DOES_NOTHING[name .. "/1"] = { [""] = mismatch, [" "] = mismatch }
  end
end

-- From a coroutine: calls `open(p)` for each table `p` in `list`, all at
-- once, with `host` and `port` set to a listener on 127.0.0.1 that accepts
-- connections and never sends a byte. Returns whether they all returned
-- within `max_ms`, and their outcomes ({ conn =, err =, ms = }) by index.
-- The listener is closed before returning (what still waits then sees EOF).
local function open_silent(open, list, max_ms)
  local socket = require("lunet.socket")
  local l = assert(socket.listen("tcp", "127.0.0.1", 0))
  local _, port = socket.getsockname(l)
  local results, left = {}, #list
  for i, p in ipairs(list) do
    p.host, p.port = "127.0.0.1", port
    lunet.spawn(function()
      local t0 = M.now_ms()
      local c, err = open(p)
      results[i] = { conn = c, err = err, ms = M.now_ms() - t0 }
      left = left - 1
    end)
  end
  local all = M.eventually(function() return left == 0 end, max_ms)
  socket.close(l) -- also closes the connections it accepted
  M.eventually(function() return left == 0 end)
  return all, results
end

--- The spec shared by the network drivers for a server that accepts the
-- connection and then never sends a byte: `open` returns nil and an error
-- containing `why` with `connect_timeout` 1, 0 and absent; 0 and absent wait
-- for the default of 10 s (checked as a lower bound only), not forever.
function M.check_silent_open(open, why)
  local expect = require("luassert")
  M.run(function()
    local all, r = open_silent(open, { { connect_timeout = 1 }, { connect_timeout = 0 }, {} }, 30000)
    expect.is_true(all, "open did not return")
    for i = 1, 3 do
      expect.is_nil(r[i].conn)
      expect.matches(why, r[i].err, 1, true)
    end
    expect.is_true(r[2].ms >= 9000 and r[3].ms >= 9000, ("%d ms, %d ms"):format(r[2].ms, r[3].ms))
  end, 45000)
end

--- Runs `body` in M.run and checks that it left no connection of the
-- database driver `mod` open and no wait behind.
function M.db_run(mod, body, limit)
  collectgarbage("collect")
  local conns, pending = mod._connections(), lunet._pending()
  M.run(function()
    body()
    collectgarbage("collect")
    assert(M.eventually(function() return mod._connections() <= conns end, 5000),
      ("%d connection(s) left open"):format(mod._connections() - conns))
  end, limit or 20000)
  assert(pending == lunet._pending(), "waits left behind")
end

--- `open` of a server database driver: the local test server (LUNET_DB_HOST,
-- LUNET_DB_PORT, LUNET_DB_USER, LUNET_DB_PASS override it). Returns a
-- function(module) → conn | nil, err.
function M.db_server(port, user, database)
  return function(m)
    return m.open({
      host = os.getenv("LUNET_DB_HOST") or "127.0.0.1",
      port = tonumber(os.getenv("LUNET_DB_PORT") or "") or port,
      user = os.getenv("LUNET_DB_USER") or user,
      password = os.getenv("LUNET_DB_PASS") or (user == "root" and "" or nil),
      database = database,
    })
  end
end

return M
