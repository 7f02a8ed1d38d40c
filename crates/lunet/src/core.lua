-- The parts of the lunet module written in Lua. Returns a function called
-- once with the module table M; it adds M.deadline and M.every.
local error, pcall, select, type, unpack, tostring = error, pcall, select, type, unpack, tostring
local huge = math.huge

return function(M, task, group)
local push, pop = M._deadline_push, M._deadline_pop
local spawn, sleep = M.spawn, M.sleep

local function finish(prev, ok, ...)
  pop(prev)
  if not ok then error((...), 0) end
  return ...
end

--- lunet.deadline(ms, fn, ...): runs fn(...) in the current task; every wait
-- inside still pending ms from now fails as a timeout. Nests (the earliest
-- deadline wins); released when fn returns or raises. Returns fn's results.
function M.deadline(ms, fn, ...)
  if type(fn) ~= "function" then
    error("lunet.deadline expects a function (got " .. type(fn) .. ")", 2)
  end
  local prev = push(ms)
  return finish(prev, pcall(fn, ...))
end

--- os.exit: while database work (or a file request, or a name lookup) runs
-- on libuv's thread pool, the process ends at once, before any exit handler
-- (libraries that work initialised, OpenSSL for one, would otherwise clean up
-- under it, and libuv would wait for it). Otherwise the original runs.
if not rawget(os, "__lunet_exit") then
  local exit, exit_if_busy = os.exit, M._exit_if_busy
  rawset(os, "__lunet_exit", exit)
  os.exit = function(code, close)
    local status = code
    if code == nil or code == true then status = 0 elseif code == false then status = 1 end
    if type(status) == "number" then exit_if_busy(status, close) end
    return exit(code, close)
  end
end

--- task:join([ms]): returns at once for a task that has ended (from the
-- main chunk too), else waits (from a coroutine only: `wait` is the
-- yield-guarded C function). It decides whether to wait, as the yield
-- guards do, and carries their chunk name (tools recognise waiting calls by it).
task.join = assert(loadstring([[
  local ended, outcome, wait = ...
  return function(t, ms)
    if ended(t, ms) then return outcome(t) end
    return wait(t, ms)
  end
]], "=lunet.guard"))(task._ended, task._outcome, task.join)

--- group:wait([ms]): waits (from a coroutine) until every child has ended,
-- then returns the group's outcome (`_outcome`); `nil, "timeout"` when the
-- time runs out (the children are cancelled then).
group.wait = assert(loadstring([[
  local wait, outcome = ...
  return function(g, ms)
    local ok, err = wait(g, ms)
    if ok == true then return outcome(g) end
    return ok, err
  end
]], "=lunet.guard"))(group.wait, group._outcome)

--- lunet.every(ms, fn, ...) -> task: calls fn(...) every ms milliseconds (after
-- each wait of ms) until the task is cancelled or fn raises.
function M.every(ms, fn, ...)
  if type(ms) ~= "number" or ms ~= ms or ms < 0 or ms == huge then
    error("lunet.every expects a time in milliseconds >= 0 (got " .. tostring(ms) .. ")", 2)
  end
  if type(fn) ~= "function" then
    error("lunet.every expects a function (got " .. type(fn) .. ")", 2)
  end
  local n, args = select("#", ...), { ... }
  return spawn(function()
    while true do
      sleep(ms)
      fn(unpack(args, 1, n))
    end
  end)
end
end
