---@meta lunet.signal

--- Waiting for process signals from a coroutine.
---@class lunet.signal
local signal = {}

--- Suspends the calling coroutine until the process receives the signal
--- `name`, then returns `name` as it was given. Accepted names: `INT`,
--- `TERM`, `HUP`, `QUIT`, `USR1`, `USR2`, `WINCH`, `ALRM`, `CONT`, `TSTP`,
--- `TTIN`, `TTOU`, each also with a `SIG` prefix (`"SIGTERM"`). Any other name
--- returns `nil, "unsupported signal name"` at once; a name that is not a
--- string raises.
---
--- A wait is one-shot: one delivery wakes every coroutine waiting for that
--- signal at the time, and a coroutine that wants the next one waits again.
--- While a wait is armed the signal does not terminate the process and keeps
--- `lunet.run()` going; when nobody waits any more, the signal's default
--- action is back. SIGPIPE and SIGCHLD are not offered.
---@async
---@param name string the signal's name, e.g. `"TERM"` or `"SIGINT"`
---@return string|nil name the name that was waited for, once the signal has arrived
---@return string|nil err why there was nothing to wait for
function signal.wait(name) end

return signal
