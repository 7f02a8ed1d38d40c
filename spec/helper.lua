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

--- Runs `body` in a lunet coroutine and the loop until it drains.
-- Fails (raises in the calling test) if the body raised, if it did not finish
-- within `limit_ms` (default 10 s), or if it left coroutines parked in lunet
-- waits. A watchdog polls every 5 ms, so the limit is a safety net, not a timer.
function M.run(body, limit_ms)
  limit_ms = limit_ms or 10000
  local parked_before = lunet._pending()
  local done, err, timed_out = false, nil, false
  lunet.spawn(function()
    local ok, e = xpcall(body, debug.traceback)
    done = true
    if not ok then err = e end
  end)
  if not done then
    lunet.spawn(function()
      local waited = 0
      while not done do
        if waited >= limit_ms then
          timed_out = true
          lunet._stop()
          return
        end
        lunet.sleep(5)
        waited = waited + 5
      end
    end)
  end
  lunet.run()
  if err then error(err, 0) end
  if timed_out then error(("test did not finish within %d ms"):format(limit_ms), 0) end
  local left = lunet._pending() - parked_before
  if left ~= 0 then error(("%d coroutine(s) left parked in lunet waits"):format(left), 0) end
end

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } lunet_spec_timespec;
  int clock_gettime(int clk, lunet_spec_timespec *tp);
]]
local ts = ffi.new("lunet_spec_timespec")

--- Monotonic time in milliseconds (for lower-bound checks, never upper bounds).
function M.now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
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
function M.lunet_run(source, args)
  local path = M.script(source)
  local rc, out, err = M.sh(("%s/lunet-run %s %s"):format(M.build, args or "", shquote(path)))
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
