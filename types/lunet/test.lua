---@meta lunet.test

--- Running lunet code inside a test framework such as busted, one test at a
--- time. Part of the core library (`require("lunet.test")` needs nothing
--- else):
---
--- ```lua
--- local lt = require("lunet.test")
--- it("echoes", function()
---   lt.run(function()
---     -- lunet code, waits included
---   end, 2000)
--- end)
--- ```
---@class lunet.test
local test = {}

--- Runs `fn(...)` as a task, runs the event loop until the task ends, then
--- cancels whatever the test left behind (`lunet.stop()`: every coroutine
--- still waiting gets `"cancelled"`) and returns `fn`'s results. If `fn`
--- raised, its error is raised again in the caller, unchanged (level 0), so
--- the test framework reports the failure; if `timeout_ms` passed before the
--- task ended, the task is cancelled and `run` raises `"timeout"`. Call it
--- from the main thread, where `lunet.run()` may be called (not from a
--- coroutine, not while the loop runs). Raises if `fn` is not a function or
--- `timeout_ms` is neither nil nor a number 0 or more. Does not yield.
---@param fn async fun(...): any... the test body; it runs as a task, so it may wait
---@param timeout_ms? number how long the task may take, in milliseconds (nil: no limit)
---@param ... any arguments handed to `fn`
---@return any results what `fn` returned
function test.run(fn, timeout_ms, ...) end

return test
