---@meta _

--- The API every database driver module has (`lunet.sqlite3`, and the MySQL
--- and PostgreSQL drivers): each driver's module class inherits from this one
--- and describes only its own `open`. Every statement runs on libuv's thread
--- pool while the calling coroutine waits, so other coroutines keep running.
--- Statements on one connection run one at a time, even when many coroutines
--- share it; separate connections run in parallel.
---
--- Statements honour `lunet.deadline` and cancellation: when the wait ends
--- early the call returns `nil, "timeout"` (or raises `"cancelled"`) at once;
--- a statement still queued for its connection then never runs, and a
--- running one is interrupted (SQLite `sqlite3_interrupt`, MySQL `KILL
--- QUERY` over a side connection, PostgreSQL a cancel request), its result
--- dropped. The connection stays usable for the next statement.
---
--- SQL errors come back as `nil`, the database's own full message and a
--- machine-readable code: PostgreSQL's SQLSTATE (`"40001"`), MySQL's
--- `"<errno>/<SQLSTATE>"` (`"1213/40001"`), SQLite's extended result code
--- name (`"SQLITE_CONSTRAINT_UNIQUE"`), `"timeout"` for a wait cut short by a
--- deadline; failures of lunet's own checks (a parameter count mismatch, a
--- closed connection) have no code. Wrong argument types raise, and so does
--- a connection of another driver (or any other value) where a connection
--- is expected. Every function is also a method of a connection
--- (`conn:query(sql, ...)`).
---@class lunet.db.Driver
local Driver = {}

--- Opens a connection. What `params` holds depends on the driver (see its
--- module). A table is read raw: only its own fields count, its metatable is
--- never consulted. Raises if `params` has the wrong type.
---@async
---@param params? table|string what to connect to
---@return lunet.db.Connection|nil conn the new connection, or nil on failure
---@return string|nil err why it failed
---@return string|nil code the error code (see above), if there is one
function Driver.open(params) end

--- Runs one statement and returns its rows: an array with one table per row,
--- keyed by column name. A SQL NULL leaves its key out of the row. Integers
--- and floating-point values become numbers, text and binary values strings
--- with every byte (NULs included), booleans (where the database has them)
--- booleans, and other types their text form.
---
--- The extra arguments are bound to the statement's placeholders by the
--- database itself, never pasted into the SQL: `nil` is NULL, booleans are
--- 1/0 (or booleans where the database has them), whole numbers 64-bit
--- integers, other numbers doubles, strings are passed byte for byte. A
--- wrong number of them gives `nil, "parameter count mismatch: ..."`; a value
--- of another type (a table, a function) raises. On a closed connection the
--- result is `nil, "connection is closed"`. Empty SQL is answered as the
--- database answers blank SQL: no rows (MySQL: `nil, "Query was empty"`).
---@async
---@param conn lunet.db.Connection an open connection of this driver
---@param sql string one SQL statement
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.Row[]|nil rows the result rows (an empty array if there are none), or nil on failure
---@return string|nil err the database's error message
---@return string|nil code the error code (see above), if there is one
function Driver.query(conn, sql, ...) end

--- Runs SQL that changes things and reports what it did. Without extra
--- arguments `sql` may be a script of several statements separated by `;`,
--- all of which are run (handy for schema files); with arguments it must be
--- exactly one statement, and they are bound as for `query`.
---@async
---@param conn lunet.db.Connection an open connection of this driver
---@param sql string one statement, or a script when no parameters are given
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.ExecResult|nil result counts of what the SQL did, or nil on failure
---@return string|nil err the database's error message
---@return string|nil code the error code (see above), if there is one
function Driver.exec(conn, sql, ...) end

--- Another name for `query`, for code written with explicit parameters in mind.
---@async
---@param conn lunet.db.Connection an open connection of this driver
---@param sql string one SQL statement
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.Row[]|nil rows the result rows, or nil on failure
---@return string|nil err the database's error message
---@return string|nil code the error code (see above), if there is one
function Driver.query_params(conn, sql, ...) end

--- Another name for `exec`, for code written with explicit parameters in mind.
---@async
---@param conn lunet.db.Connection an open connection of this driver
---@param sql string one statement, or a script when no parameters are given
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.ExecResult|nil result counts of what the SQL did, or nil on failure
---@return string|nil err the database's error message
---@return string|nil code the error code (see above), if there is one
function Driver.exec_params(conn, sql, ...) end

--- Escapes `s` for use between single quotes in SQL built by hand (binding
--- parameters is safer). Called as `escape(s)` or `escape(conn, s)`; how the
--- text is escaped is the driver's business (see its module). The connection
--- may be closed. Does not yield. Raises if the text is neither a string nor
--- a number.
---@param conn_or_s lunet.db.Connection|string|number a connection, or the text itself
---@param s? string|number the text, when a connection comes first
---@return string escaped the text, ready to be put between single quotes
function Driver.escape(conn_or_s, s) end

--- The connection's statement cache: statements are prepared once per
--- connection and kept, up to a bound, least recently used first out.
--- Zeros once the connection is closed. Does not yield.
---@param conn lunet.db.Connection the connection
---@return lunet.db.ConnStats stats its cache counters
function Driver.stats(conn) end

--- A pool of connections opened with `config` (as for `open`). The pool
--- is keyed on the whole configuration and the options: the same ones give
--- the same pool (until it is closed), any difference another pool, so a
--- pool never mixes users, databases or settings. Bad options raise.
---
--- A connection is handed out only clean: one left inside a transaction is
--- rolled back when it comes back (closed if that fails), one the server
--- dropped is closed, one idle longer than `check_after` is checked with
--- `SELECT 1` before it is handed out. Waiting callers are served first
--- come, first served; their wait honours `acquire_timeout`, the task's
--- deadline and cancellation.
---@param config table|string what `open` takes
---@param opts? lunet.db.PoolOptions sizes and time limits
---@return lunet.db.Pool pool the pool
function Driver.pool(config, opts) end

--- Closes a connection. Returns at once, even while a statement runs on it:
--- that statement is interrupted (it returns `nil, err`) and the connection
--- is closed on the thread pool once it has stopped.
--- Closing again does nothing; later statements on it return
--- `nil, "connection is closed"`. A connection the program drops without
--- closing is closed when it is collected. Raises if `conn` is not a
--- connection of this driver.
---@param conn lunet.db.Connection the connection to close
function Driver.close(conn) end

--- A database connection (a userdata handle). Each driver has its own
--- connection type deriving from this one; `tostring(conn)` names the driver
--- and says whether it is closed.
---@class lunet.db.Connection
local conn = {}

--- Runs one statement and returns its rows; the same as `query(conn, sql, ...)`.
---@async
---@param sql string one SQL statement
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.Row[]|nil rows the result rows, or nil on failure
---@return string|nil err the database's error message
---@return string|nil code the error code (see above), if there is one
function conn:query(sql, ...) end

--- Runs SQL that changes things; the same as `exec(conn, sql, ...)`.
---@async
---@param sql string one statement, or a script when no parameters are given
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.ExecResult|nil result counts of what the SQL did, or nil on failure
---@return string|nil err the database's error message
---@return string|nil code the error code (see above), if there is one
function conn:exec(sql, ...) end

--- Another name for `conn:query`.
---@async
---@param sql string one SQL statement
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.Row[]|nil rows the result rows, or nil on failure
---@return string|nil err the database's error message
---@return string|nil code the error code (see above), if there is one
function conn:query_params(sql, ...) end

--- Another name for `conn:exec`.
---@async
---@param sql string one statement, or a script when no parameters are given
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.ExecResult|nil result counts of what the SQL did, or nil on failure
---@return string|nil err the database's error message
---@return string|nil code the error code (see above), if there is one
function conn:exec_params(sql, ...) end

--- Escapes `s` the way this connection's driver does; the same as
--- `escape(conn, s)`.
---@param s string|number the text to escape
---@return string escaped the text, ready to be put between single quotes
function conn:escape(s) end

--- The statement cache's counters; the same as `stats(conn)`.
---@return lunet.db.ConnStats stats its cache counters
function conn:stats() end

--- Closes the connection; the same as `close(conn)`.
function conn:close() end

--- One result row: column name to value. A NULL value is an absent key.
---@alias lunet.db.Row table<string, string|number|boolean>

--- What `exec` returns.
---@class lunet.db.ExecResult
---@field affected_rows number how many rows the statements changed
---@field last_insert_id number the id of the row most recently inserted on this connection, as the database reports it

--- What `stats(conn)` returns.
---@class lunet.db.ConnStats
---@field cache_size number statements prepared and kept now
---@field cache_capacity number the most it keeps
---@field cache_hits number statements that found their prepared statement
---@field cache_misses number statements that had to be prepared
---@field cache_evictions number prepared statements dropped to make room

--- The options of `pool(config, opts)`; times in milliseconds, absent = no limit.
---@class lunet.db.PoolOptions
---@field size? number the most connections open at once (default 10; a positive integer)
---@field min_idle? number connections kept open even when idle (default 0, at most `size`)
---@field idle_timeout? number an idle connection above `min_idle` is closed after this long
---@field max_lifetime? number a connection is closed (when idle) this long after it was opened
---@field acquire_timeout? number how long a caller waits for a connection (then `nil, "timeout", "timeout"`)
---@field check_after? number a connection idle this long is checked before it is handed out (default 1000)
---@field on_connect? fun(conn: lunet.db.Connection): any runs on each new connection; `nil`/`false` (with a message) or an error refuses it

--- A connection pool. Its calls wait (they must run in a coroutine).
---@class lunet.db.Pool
local Pool = {}

--- Runs a statement on a connection of the pool, as `query` does; also
--- `nil, "timeout", "timeout"` when no connection came in time and `nil,
--- "pool is closed"`.
---@async
---@param sql string one SQL statement
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.Row[]|nil rows the result rows, or nil on failure
---@return string|nil err why it failed
---@return string|nil code the error code, if there is one
function Pool:query(sql, ...) end

--- Runs SQL that changes things on a connection of the pool, as `exec` does.
---@async
---@param sql string one statement, or a script when no parameters are given
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.ExecResult|nil result counts of what the SQL did, or nil on failure
---@return string|nil err why it failed
---@return string|nil code the error code, if there is one
function Pool:exec(sql, ...) end

--- Calls `fn(conn)` with a connection of the pool held for the whole call
--- and returns its results; the connection goes back when `fn` returns or
--- raises (the error is raised again). `nil, err, code` if no connection
--- could be had.
---@async
---@param fn fun(conn: lunet.db.Connection): any the work
---@param ms? number how long to wait for a connection (default: the pool's `acquire_timeout`)
---@return any results what `fn` returned (all of it)
function Pool:with(fn, ms) end

--- `tx.transaction` on a connection of the pool (`opts.mode` is its mode).
---@async
---@param fn fun(t: lunet.db.TxHandle): any the transaction's body
---@param opts? table `{mode = ...}`
---@return any result fn's first result after COMMIT, or nil
---@return any err fn's second result after COMMIT, or the error table
function Pool:transaction(fn, opts) end

--- The pool's counters.
---@return lunet.db.PoolStats stats its counters
function Pool:stats() end

--- Closes the idle connections now and the others as they come back;
--- waiting and later callers get `nil, "pool is closed"`.
function Pool:close() end

--- What `pool:stats()` returns.
---@class lunet.db.PoolStats
---@field size number connections open (or opening) now
---@field max number the pool's `size` option
---@field idle number connections waiting in the pool
---@field in_use number connections handed out
---@field waiting number callers waiting for a connection
---@field created number connections opened so far
---@field reused number connections handed out again
---@field timeouts number acquires that timed out
---@field evicted number connections closed for `idle_timeout` or `max_lifetime`
---@field broken number connections closed because the server dropped them or a reset failed
---@field cache_hits number statement cache hits of the idle connections
---@field cache_misses number statement cache misses of the idle connections
---@field cache_size number statements cached on the idle connections

--- The transaction helper (C lunet's API): `require("lunet.<driver>_tx")`.
---@class lunet.db.Tx
local Tx = {}

--- Runs `fn(t)` inside a transaction on `conn`, which it holds for the
--- whole call. COMMIT when `fn` returns a non-nil first value (its first two
--- results are returned); ROLLBACK when it returns nil (optionally with a
--- reason), raises (any value), or its task is cancelled (the cancellation is
--- raised again) or passes its deadline. A nested call on the same
--- connection uses a savepoint. `mode`: SQLite `"DEFERRED"` (default),
--- `"IMMEDIATE"` or `"EXCLUSIVE"`; PostgreSQL and MySQL an isolation level
--- (`"SERIALIZABLE"`, `"REPEATABLE READ"`, `"READ COMMITTED"`, `"READ
--- UNCOMMITTED"`). When this task can no longer wait (cancelled, past its
--- deadline) the ROLLBACK runs in a task of its own, which closes the
--- connection if even that fails.
---@async
---@param conn lunet.db.Connection an open connection
---@param fn fun(t: lunet.db.TxHandle): any the transaction's body
---@param mode? string how to begin (see above)
---@return any result fn's first result after COMMIT, or nil after ROLLBACK
---@return any err fn's second result after COMMIT, or a `lunet.db.TxError`
function Tx.transaction(conn, fn, mode) end

--- What `fn` gets: statements on the transaction's connection. Each raises
--- on failure (the transaction then rolls back).
---@class lunet.db.TxHandle
---@field query fun(sql: string, ...): lunet.db.Row[] the rows
---@field query_row fun(sql: string, ...): lunet.db.Row|nil the first row
---@field exec fun(sql: string, ...): lunet.db.ExecResult `{affected_rows, last_insert_id}`

--- The error of a transaction that did not commit (`tostring(err)` and
--- concatenation give its message).
---@class lunet.db.TxError
---@field message string why
---@field poisoned boolean BEGIN, COMMIT or ROLLBACK itself failed: the connection's state is unknown, close it
---@field code? string the error code of the statement that failed, if any
