-- Shared helper for the busted specs: puts the built modules on the module
-- path (LUNET_BUILD, default build/release), runs the loop with a time limit,
-- and runs subprocesses.
local M = {}

M.build = os.getenv("LUNET_BUILD") or "build/release"
M.root = os.getenv("PWD") or "."
if not package.cpath:find(M.build .. "/?.so", 1, true) then
  package.cpath = M.build .. "/?.so;" .. M.build .. "/test/?.so;" .. package.cpath
end

local lunet = require("lunet")
M.lunet = lunet

--- Runs `body` in a lunet coroutine and the loop until the body has finished
-- and nothing it started is still parked in a lunet wait (open listeners or
-- connections may stay open: they are not waits).
-- Fails (raises in the calling test) if the body raised, if that does not
-- happen within `limit_ms` (default 10 s), or if it left coroutines parked.
-- A watchdog polls every millisecond or so: the limit is a safety net, not a timer.
function M.run(body, limit_ms)
  limit_ms = limit_ms or 10000
  local parked_before = lunet._pending()
  local done, err, timed_out = false, nil, false
  lunet.spawn(function()
    local ok, e = xpcall(body, debug.traceback)
    done = true
    if not ok then err = e end
  end)
  local t0 = M.now_ms()
  lunet.spawn(function()
    while true do
      -- The watchdog itself is running, so it is not counted as parked here.
      if done and lunet._pending() == parked_before then break end
      if M.now_ms() - t0 >= limit_ms then
        timed_out = true
        break
      end
      lunet.sleep(1)
    end
    lunet._stop()
  end)
  lunet.run()
  if err then error(err, 0) end
  if timed_out then
    if not done then error(("test did not finish within %d ms"):format(limit_ms), 0) end
    error(("%d coroutine(s) left parked in lunet waits"):format(lunet._pending() - parked_before), 0)
  end
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

return M
