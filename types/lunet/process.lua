---@meta lunet.process

--- Child processes (libuv process handles): start one, wait for its exit or
--- for it to say it is ready, send it signals. Children are known by their
--- process id. A running child keeps `lunet.run()` going; its exit status is
--- kept until a `process.wait` collects it. `lunet-run --workers` is built on
--- this module.
---@class lunet.process
local process = {}

--- Starts `file` (looked up on PATH) with `args` after it in argv. The child
--- inherits standard input, output and error and the environment, with
--- `opts.env` (names to values) set over it. `opts.detached`: the child gets a
--- session of its own (signals from the terminal reach only this process).
--- `opts.ready`: the child gets the write end of a pipe as its file
--- descriptor 3 and `LUNET_READY_FD=3` in its environment; it writes a byte
--- there when it is ready (see `process.ready`). Returns `nil, err` if the
--- program cannot be started; raises for a `file` or argument that is not a
--- string (or holds a NUL byte) and for bad options.
---@param file string the program
---@param args string[] its arguments
---@param opts? {env?: table<string, string>, detached?: boolean, ready?: boolean} env, detached, ready
---@return integer|nil pid the child's process id
---@return string|nil err why it could not start
function process.spawn(file, args, opts) end

--- Waits until the child `pid` exits and returns its exit status and the
--- signal that ended it (0 = none). The first wait to see an exit collects
--- it: later calls return `nil, "no such child process"`, as they do for a
--- pid this runtime did not start. `ms` bounds the wait (`nil, "timeout"`;
--- the child goes on).
---@async
---@param pid integer a child's process id
---@param ms? number time limit in milliseconds
---@return integer|nil status the exit status
---@return integer|string|nil signal the terminating signal (0 = none), or the error
function process.wait(pid, ms) end

--- Waits until the child `pid`, started with `opts.ready`, writes to its
--- readiness pipe: `true` (at once if it has already). `nil, "exited before
--- ready"` if the child closed the pipe or exited without writing;
--- `nil, "spawned without the ready option"`; `nil, "timeout"` when `ms`
--- ran out.
---@async
---@param pid integer a child's process id
---@param ms? number time limit in milliseconds
---@return boolean|nil ok true once the child is ready
---@return string|nil err why not
function process.ready(pid, ms) end

--- Sends the signal `name` (`"TERM"`, `"KILL"`, `"HUP"`, `"INT"`, ... any
--- name `signal.wait` knows, or `"KILL"`; `SIG` prefix allowed) to the child
--- `pid`. Only children of this runtime that have not exited:
--- `nil, "no such child process"` or `nil, "process exited"` otherwise.
--- Raises for an unknown signal name or a pid that is not a positive integer.
---@param pid integer a child's process id
---@param name string the signal
---@return boolean|nil ok true when sent
---@return string|nil err why not
function process.kill(pid, name) end

--- The number of CPUs this process may use (what `--workers auto` starts).
---@return integer n the number of CPUs
function process.cpus() end

--- This process's id.
---@return integer pid the id of this process
function process.pid() end

return process
