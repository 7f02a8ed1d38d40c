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
--- a missing file, an SQL error) are returned as `nil` and a message, and so
--- is anything wrong with what a call acts on (a handle, a descriptor, a path,
--- an address: often the unchecked result of an earlier call), with C lunet's
--- strings (`"invalid socket handle"`, `"fs.read requires fd and length"`).
--- Mistakes in how to act (a length, data, a mode, an option or a timeout of
--- the wrong type) raise an error, such as
--- `bad argument #2 to 'fs.read' (number expected, got nil)`.
---
--- Every wait (sleep, accept, connect, read, write, UDP receive, file
--- operations, signal waits, database statements, `task:join`, and the waits
--- of channels, semaphores, wait groups, groups and `lunet.wait_any`) can end early:
--- by a time limit (`lunet.deadline`, the per-handle timeouts of
--- `lunet.socket` and `lunet.udp`), then the call fails with `"timeout"` in its
--- usual failure shape (`nil, "timeout"`; `"timeout"` alone for calls that
--- return one value, such as `socket.write` and `fs.close`;
--- `nil, nil, "timeout"` for `udp.recv`), or by `task:cancel()`, which raises
--- `"cancelled"` at the wait. Times are milliseconds; `nil` means no limit; a
--- negative, NaN or infinite time, or one that is not a number, raises.
---@class lunet
local lunet = {}

--- Starts `fn(...)` in a new coroutine, a task, right away: `spawn` returns
--- once the task has finished or reached its first wait. Usable from the main
--- chunk and from other coroutines. Two exceptions start the task on the next
--- loop iteration instead (its status is `"ready"` until then): a spawn
--- nested more than 200 deep (each task spawning the next before its first
--- wait), so that recursive spawning cannot overflow the C stack, and a spawn
--- from inside a finaliser (`__gc`) or a debug hook, where LuaJIT cannot
--- yield.
---
--- An error inside the task, before or after a wait, stops only that task.
--- If nobody is joining it, it is reported: by the handler given to
--- `lunet.on_error`, by default printed to stderr as
--- `[lunet] coroutine error: <message>` with a traceback. A task waiting in a
--- lunet call stays alive even if nothing in the program refers to it or to
--- its handle; scripts that ignore the returned task are unaffected. Raises if
--- `fn` is not a function.
---@param fn async fun(...): any... what the task runs
---@param ... any arguments handed to `fn`
---@return lunet.Task task the new task
function lunet.spawn(fn, ...) end

--- Suspends the calling coroutine for `ms` milliseconds (the fractional part
--- is ignored). `lunet.sleep(0)` waits one turn of the loop, which lets every
--- other ready coroutine run. Returns nothing, except when a
--- `lunet.deadline` ends the sleep before its time: then it returns
--- `nil, "timeout"`. Raises if `ms` is not a number, or is negative or NaN
--- (`lunet.sleep duration must be >= 0`).
---@async
---@param ms number how long to wait, in milliseconds (0 or more)
---@return nil none nothing, unless the sleep was cut short by a deadline
---@return string|nil err `"timeout"` when a `lunet.deadline` ended the sleep early
function lunet.sleep(ms) end

--- Runs the event loop until nothing is left that could resume a coroutine:
--- no sleeps, listeners, bound UDP sockets, armed signal waits, or file,
--- network and database work in progress; or until `lunet.stop()`. An open
--- connection nobody reads or writes does not keep it running. Call it from
--- the main thread once the first coroutines are spawned; raises if called
--- from a coroutine, while the loop is already running, or from a finaliser
--- or a debug hook.
function lunet.run() end

--- The task that is running, or `nil` on the main thread and in a coroutine
--- that `lunet.spawn` did not make. Each call returns a new handle; handles
--- of one task compare equal with `==`.
---@return lunet.Task|nil task the running task
function lunet.current() end

--- Runs `fn(...)` in the calling task with a time limit: every wait inside it
--- that is still pending `ms` milliseconds after this call fails as a timeout
--- of that call (`nil, "timeout"`, `"timeout"` for one-value calls,
--- `nil, nil, "timeout"` for `udp.recv`; a `lunet.sleep` returns
--- `nil, "timeout"`). A wait begun after the time is up fails on the next loop
--- iteration. The operation whose wait timed out is dealt with as for a
--- per-handle timeout (see the README): a write goes on in the background, a
--- connect is abandoned, a file operation completes in the background.
---
--- Deadlines nest: inside another deadline the earlier of the two applies.
--- The limit is lifted when `fn` returns or raises; an error of `fn` is raised
--- again, unchanged (level 0). Tasks spawned inside `fn` do not inherit the
--- deadline. Returns what `fn` returns. Raises when not called from a task
--- (`lunet.deadline must be called from a task`), when `ms` is not a valid
--- time or `fn` not a function. Does not itself yield, but `fn` may.
---@param ms number the time limit, in milliseconds from now (0 or more)
---@param fn async fun(...): any... the code to run under the limit (in the calling task)
---@param ... any arguments handed to `fn`
---@return any results what `fn` returned, all of it
function lunet.deadline(ms, fn, ...) end

--- Starts a task that calls `fn(...)` every `ms` milliseconds: it sleeps
--- `ms`, calls `fn`, and repeats, so the period is `ms` plus the time `fn`
--- takes. Cancel the returned task to stop it; an error in `fn` ends it and is
--- reported like any task error. Raises unless `ms` is a number, 0 or more and
--- finite, and `fn` a function.
---@param ms number the pause before each call, in milliseconds
---@param fn async fun(...): any... the function to call (in the repeating task)
---@param ... any arguments handed to `fn` on every call
---@return lunet.Task task the repeating task
function lunet.every(ms, fn, ...) end

--- Sets the handler for an error that ends a task (or a coroutine that waits
--- in lunet but is not a task) while nobody is joining it. It is called as
--- `fn(err, traceback, task)`, with `task` nil for a coroutine that is not a
--- task, instead of the default report. `nil` restores the default, which
--- prints `[lunet] coroutine error: <message>` and the traceback to stderr. A
--- handler that raises is reported as `[lunet] error handler failed: ...`,
--- followed by the default report. Errors of a cancelled task that end it
--- with `"cancelled"` are never reported. Raises if `fn` is neither a
--- function nor nil.
---@param fn? fun(err: any, traceback: string, task: lunet.Task|nil) the handler, or nil for the default
function lunet.on_error(fn) end

--- The loop's monotonic clock, in milliseconds. The value is taken once per
--- loop iteration, so it does not advance while Lua code runs without waiting;
--- it is the clock that sleeps and timeouts are measured with.
---@return number ms the loop time in milliseconds
function lunet.now() end

--- A monotonic clock in nanoseconds, read at every call (for measuring short
--- durations). Its origin is arbitrary.
---@return number ns the current time in nanoseconds
function lunet.hrtime() end

--- The process id.
---@return integer pid the id of this process
function lunet.getpid() end

--- Makes a channel: a FIFO queue of values between tasks. With `capacity`
--- 0 (the default) it is a rendezvous: a send completes only when a receiver
--- takes the value. With `capacity` n up to n values wait in the channel and
--- a send waits only while it is full. Any value but `nil` can be sent.
--- Raises unless `capacity` is a whole number from 0 to 2^31-1.
---
--- Waiting receivers are served in the order they started waiting, as are
--- waiting senders (their values come out in that order); every wait honours
--- its own `ms`, `lunet.deadline` and `task:cancel()`. A waiter that is handed
--- a value (or, for semaphores, wait groups and groups, its permit or its
--- wait's end) runs once the task that woke it waits or ends: in the same
--- loop iteration, up to 8 hand-offs deep, else in the next. A value is delivered
--- exactly once: a send that timed out or was cancelled delivered nothing; a
--- send that returned `true` delivered its value even if its task is
--- cancelled before it runs again.
---@param capacity? integer how many values the channel holds (default 0: rendezvous)
---@return lunet.Channel ch the new channel
function lunet.channel(capacity) end

--- Makes a counting semaphore with `n` permits (a whole number from 1 to
--- 2^31-1, else it raises). `acquire` takes one, waiting while none is free;
--- `release` gives one back, straight to the task that has waited longest if
--- any (waiters are served in FIFO order, and a newcomer cannot overtake
--- them).
---@param n integer the number of permits
---@return lunet.Semaphore sem the new semaphore
function lunet.semaphore(n) end

--- Makes a wait group: a counter, 0 at first, that tasks can wait to see
--- reach zero (`add` before starting work, `done` when each piece ends).
---@return lunet.WaitGroup wg the new wait group
function lunet.waitgroup() end

--- Waits until one item of `list` is ready and returns its index (the
--- lowest index among those ready at once). Items are tasks (ready once they
--- have ended) and channels (ready when a `recv` would not wait: a value is
--- buffered, a sender waits, or the channel is closed, also when it is closed
--- while `wait_any` waits). Nothing is taken from a channel: call `recv`
--- after (with several receivers, another may take the value first). Does
--- not count as a join: an error of a task nobody joins is still reported.
--- Returns at once if an item is ready, else waits; returns `nil,
--- "timeout"` when `ms` passed first. Waiters woken by the same event resume
--- in the order they started waiting. Raises for an empty list and for
--- items that are neither tasks nor channels.
---@async
---@param list (lunet.Task|lunet.Channel)[] what to wait for
---@param ms? number how long to wait at most, in milliseconds (nil: no limit)
---@return integer|nil index the index of the ready item, nil on timeout
---@return string|nil err `"timeout"`
function lunet.wait_any(list, ms) end

--- Makes a task group: tasks started with `g:spawn` are its children, and
--- `g:wait()` waits for all of them. The first child that fails cancels the
--- others and its error is what `wait` returns. Children cannot outlive the
--- group: they are cancelled when a `g:wait` times out or is cancelled, by
--- `g:cancel()`, and when the task that created the group ends.
---@return lunet.Group g the new group
function lunet.group() end

--- Cancels every wait in progress and makes `lunet.run()` return once the
--- coroutines it cancelled have run: each of them gets `"cancelled"` raised at
--- its wait (tasks end as `"cancelled"` unless they catch it). Listeners,
--- sockets and other handles stay open. Meant for shutting down and for
--- tests; `lunet.run()` may be called again afterwards.
function lunet.stop() end

--- A task: a coroutine started by `lunet.spawn` (or `lunet.every`), with
--- what a program can ask of it. `tostring(task)` gives
--- `lunet.task: 0x... (live|done|failed|cancelled)`; two handles of the same
--- task compare equal. A task's results or error are kept while a handle to it
--- exists.
---@class lunet.Task
local task = {}

--- Waits until the task has ended and returns how it ended:
--- `true, ...` with the values its function returned; `false, err` when it
--- raised `err`; `false, "cancelled"` when it was cancelled; or
--- `nil, "timeout"` when `ms` passed first (the task goes on running). Any
--- number of coroutines may join one task, and a task may be joined again
--- later with the same answer. Joining a task that has already ended returns
--- at once, also from the main chunk; otherwise it must be called from a
--- coroutine. Waiting joiners are resumed on the loop iteration after the
--- task ends. A task joining itself raises
--- `task:join: a task cannot join itself`.
---@async
---@param ms? number how long to wait at most, in milliseconds (nil: no limit)
---@return boolean|nil ok true if the task returned, false if it failed or was cancelled, nil on timeout
---@return any values the task's results, after `ok`; or its error, `"cancelled"` or `"timeout"`
function task:join(ms) end

--- Cancels the task: its current wait ends and raises the string
--- `"cancelled"` at the wait point, inside the task, where a `pcall` may catch
--- it to clean up. The cancellation is sticky: every later wait of the task
--- raises it again (on the next loop iteration), so a cancelled task cannot
--- go on waiting. A task that ends with that error has status `"cancelled"`,
--- is not reported as an error, and its joiners get `false, "cancelled"`
--- (and `reason`, when one was given, as a third value). A task cancelled
--- before it started never runs. Cancelling a task that has ended, or one
--- already cancelled, does nothing. Works from any coroutine, from the main
--- chunk, and on the running task itself (its next wait raises). Does not yield.
---@param reason? any returned by `join` after `"cancelled"`
function task:cancel(reason) end

--- Where the task is: `"running"` (it is the running coroutine, or it
--- resumed the one that is), `"waiting"` (parked in a wait), `"ready"` (its
--- wait has ended and it will be resumed on the next loop iteration, or it
--- has not started yet), `"done"` (returned), `"failed"` (raised an error) or
--- `"cancelled"`.
---@return "running"|"waiting"|"ready"|"done"|"failed"|"cancelled" status the task's state
function task:status() end

--- A channel made by `lunet.channel`. `#ch` is the number of buffered
--- values. `tostring(ch)` gives `lunet.channel: 0x... (len/capacity[, closed])`.
---@class lunet.Channel
local channel = {}

--- Sends `v`: returns `true` once the value is buffered or taken by a
--- receiver (waiting, from a coroutine, while the channel is full, or for a
--- rendezvous channel until a receiver takes it). Returns `nil, "closed"` on
--- a closed channel, also for a send waiting when the channel is closed (its
--- value is dropped), and `nil, "timeout"` when `ms` passed first (the value
--- was not sent). Sending on a closed channel does not raise: any task may
--- close a channel while others send. Raises for `nil`.
---@async
---@param v any the value (not nil)
---@param ms? number how long to wait at most, in milliseconds (nil: no limit)
---@return true|nil ok true when sent
---@return string|nil err `"closed"` or `"timeout"`
function channel:send(v, ms) end

--- Receives the oldest value, waiting (from a coroutine) until there is one.
--- Returns `nil, "closed"` once the channel is closed and no value is left
--- (values buffered before the close are received first), `nil, "timeout"`
--- when `ms` passed first.
---@async
---@param ms? number how long to wait at most, in milliseconds (nil: no limit)
---@return any v the value, nil when closed or on timeout
---@return string|nil err `"closed"` or `"timeout"`
function channel:recv(ms) end

--- Closes the channel: later sends return `nil, "closed"`; waiting receivers
--- and senders get `nil, "closed"` on the next loop iteration (all of them at
--- once, in the order they waited); buffered values can still be received.
--- Closing a closed channel does nothing. Does not yield.
function channel:close() end

--- The number of buffered values (`#ch`). A rendezvous channel buffers none.
---@return integer n the number of values waiting in the channel
function channel:len() end

--- A semaphore made by `lunet.semaphore`.
---@class lunet.Semaphore
local semaphore = {}

--- Takes a permit, waiting (from a coroutine) while none is free: `true`, or
--- `nil, "timeout"` when `ms` passed first (no permit taken). A task
--- cancelled while it waits takes no permit; one woken with a permit keeps
--- it even if it is cancelled before it runs again.
---@async
---@param ms? number how long to wait at most, in milliseconds (nil: no limit)
---@return true|nil ok true once a permit is held
---@return string|nil err `"timeout"`
function semaphore:acquire(ms) end

--- Gives a permit back, to the longest waiter if there is one. Raises
--- `semaphore:release: no permit is held` when more permits would be
--- released than were acquired (a bug in the program; use a channel to
--- signal between tasks). Does not yield.
function semaphore:release() end

--- The number of permits free now.
---@return integer n free permits
function semaphore:available() end

--- A wait group made by `lunet.waitgroup`.
---@class lunet.WaitGroup
local waitgroup = {}

--- Adds `n` (default 1; may be negative) to the counter; reaching zero wakes
--- every waiter. Raises if the counter would go below zero.
---@param n? integer how much to add
function waitgroup:add(n) end

--- Subtracts 1 from the counter (`wg:add(-1)`); raises if it is zero.
function waitgroup:done() end

--- The counter.
---@return integer n the counter
function waitgroup:count() end

--- Waits (from a coroutine) until the counter is zero: `true` (at once if it
--- is), or `nil, "timeout"` when `ms` passed first. Waiters resume in the
--- order they started waiting.
---@async
---@param ms? number how long to wait at most, in milliseconds (nil: no limit)
---@return true|nil ok true once the counter is zero
---@return string|nil err `"timeout"`
function waitgroup:wait(ms) end

--- A task group made by `lunet.group`.
---@class lunet.Group
local group = {}

--- Starts `fn(...)` as a child task of the group, like `lunet.spawn`, and
--- returns it; returns `nil, "cancelled"` once the group has been cancelled
--- (by a failure, `g:cancel()`, a `g:wait` that ended early or the end of
--- the task that created it). An error of a child is not reported if a
--- `g:wait` is waiting for it (it is returned there); otherwise it is
--- reported like any task error, and `g:wait` still returns it.
---@param fn function what the child runs
---@param ... any arguments for `fn`
---@return lunet.Task|nil task the child, nil if the group was cancelled
---@return string|nil err `"cancelled"`
function group:spawn(fn, ...) end

--- Waits (from a coroutine) until every child has ended and returns `true`;
--- `false, err, task` when a child failed (the first one: the others were
--- cancelled when it failed, and have ended); `false, "cancelled"` when the
--- group was cancelled. When `ms` passes first, or the waiting task is
--- cancelled, the children are cancelled and `wait` returns `nil,
--- "timeout"` (or raises `"cancelled"`) at once; the children end at their
--- current wait, on the next loop iteration. A child waiting for its own
--- group raises.
---@async
---@param ms? number how long to wait at most, in milliseconds (nil: no limit)
---@return boolean|nil ok true if every child returned; false on a failure or cancellation; nil on timeout
---@return any err the first failure's error, `"cancelled"` or `"timeout"`
---@return lunet.Task|nil task the child that failed
function group:wait(ms) end

--- Cancels every live child (in the order they were spawned); later spawns
--- return `nil, "cancelled"`. Does not yield.
function group:cancel() end

--- The number of children still running.
---@return integer n live children
function group:size() end

return lunet
