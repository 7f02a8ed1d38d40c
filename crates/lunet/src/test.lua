-- lunet.test: running lunet code inside a test framework (busted).
--
--   local lt = require("lunet.test")
--   it("echoes", function() lt.run(function() ... end, 2000) end)
--
-- run(fn [, timeout_ms, ...]) spawns fn(...) as a task, runs the loop until
-- it ends, cancels whatever the test left running (lunet.stop), and then
-- returns fn's results, or raises fn's error in the caller, or raises
-- "timeout" when timeout_ms ran out first (the task is cancelled).
local lunet = require("lunet")
local M = { _VERSION = lunet._VERSION }

local function outcome(ok, ...)
  return ok, select("#", ...), { ... }
end

-- The test body's own error is caught in its task, so it is re-raised in
-- the caller (unchanged) and not also reported as a coroutine error.
local function body(fn, ...)
  return outcome(pcall(fn, ...))
end

function M.run(fn, timeout_ms, ...)
  if type(fn) ~= "function" then
    error("lunet.test.run expects a function (got " .. type(fn) .. ")", 2)
  end
  if timeout_ms ~= nil and (type(timeout_ms) ~= "number" or timeout_ms ~= timeout_ms or timeout_ms < 0) then
    error("lunet.test.run: timeout_ms must be a number >= 0", 2)
  end
  local task = lunet.spawn(body, fn, ...)
  local result
  lunet.spawn(function()
    local joined, ok, n, vals = task:join(timeout_ms)
    if joined == nil then
      task:cancel()
      result = { ok = false, err = "timeout" }
    elseif not joined then
      result = { ok = false, err = ok } -- cancelled from outside
    elseif ok then
      result = { ok = true, n = n, vals = vals }
    else
      result = { ok = false, err = vals[1] }
    end
    lunet.stop()
  end)
  lunet.run()
  if not result then
    result = { ok = false, err = "lunet.test.run: the loop ended before the test task did" }
  end
  if not result.ok then error(result.err, 0) end
  return unpack(result.vals, 1, result.n)
end

return M
