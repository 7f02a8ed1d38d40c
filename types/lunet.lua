---@meta lunet

--- The core: start coroutines, pause them, and run the event loop that
--- resumes them when what they wait for is ready. Works in any LuaJIT program
--- (`require("lunet")`, then `lunet.run()` as the last line) and under the
--- `lunet-run` launcher, which runs the loop for you after the script.
---
--- Conventions shared by every module: a function marked async suspends the
--- calling coroutine, so it must be called from inside one. Called from the
--- main chunk it raises `<module>.<fn> must be called from coroutine`, and
--- where Lua cannot yield (a `table.sort` comparator, a `string.gsub`
--- callback) it raises `<module>.<fn> called in non-yieldable context`, before
--- anything has started. Failures of the outside world (a refused connection,
--- a missing file, an SQL error) are returned as `nil` and a message; mistakes
--- in the program (an argument of the wrong type) raise an error.
---@class lunet
local lunet = {}

--- Starts `fn(...)` in a new coroutine right away: `spawn` returns once the
--- coroutine has finished or reached its first wait. Usable from the main
--- chunk and from other coroutines. An error inside the coroutine, before or
--- after a wait, stops only that coroutine: it is printed to stderr as
--- `[lunet] coroutine error: <message>` with a traceback. A coroutine waiting
--- in a lunet call stays alive even if nothing in the program refers to it.
--- Raises if `fn` is not a function.
---@param fn function what the coroutine runs
---@param ... any arguments handed to `fn`
function lunet.spawn(fn, ...) end

--- Suspends the calling coroutine for `ms` milliseconds (the fractional part
--- is ignored). `lunet.sleep(0)` waits one turn of the loop, which lets every
--- other ready coroutine run. Raises if `ms` is not a number, or is negative
--- (`lunet.sleep duration must be >= 0`).
---@async
---@param ms number how long to wait, in milliseconds (0 or more)
function lunet.sleep(ms) end

--- Runs the event loop until nothing is left that could resume a coroutine:
--- no sleeps, listeners, bound UDP sockets, armed signal waits, or file,
--- network and database work in progress. An open connection nobody reads or
--- writes does not keep it running. Call it from the main thread once the
--- first coroutines are spawned; raises if called from a coroutine or while
--- the loop is already running.
function lunet.run() end

return lunet
