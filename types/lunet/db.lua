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
--- SQL errors come back as `nil` and the database's own full message. Wrong
--- argument types raise, and so does a connection of another driver (or any
--- other value) where a connection is expected. Every function is also a
--- method of a connection (`conn:query(sql, ...)`).
---@class lunet.db.Driver
local Driver = {}

--- Opens a connection. What `params` holds depends on the driver (see its
--- module). A table is read raw: only its own fields count, its metatable is
--- never consulted. Raises if `params` has the wrong type.
---@async
---@param params? table|string what to connect to
---@return lunet.db.Connection|nil conn the new connection, or nil on failure
---@return string|nil err why it failed
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
function Driver.exec(conn, sql, ...) end

--- Another name for `query`, for code written with explicit parameters in mind.
---@async
---@param conn lunet.db.Connection an open connection of this driver
---@param sql string one SQL statement
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.Row[]|nil rows the result rows, or nil on failure
---@return string|nil err the database's error message
function Driver.query_params(conn, sql, ...) end

--- Another name for `exec`, for code written with explicit parameters in mind.
---@async
---@param conn lunet.db.Connection an open connection of this driver
---@param sql string one statement, or a script when no parameters are given
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.ExecResult|nil result counts of what the SQL did, or nil on failure
---@return string|nil err the database's error message
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
function conn:query(sql, ...) end

--- Runs SQL that changes things; the same as `exec(conn, sql, ...)`.
---@async
---@param sql string one statement, or a script when no parameters are given
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.ExecResult|nil result counts of what the SQL did, or nil on failure
---@return string|nil err the database's error message
function conn:exec(sql, ...) end

--- Another name for `conn:query`.
---@async
---@param sql string one SQL statement
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.Row[]|nil rows the result rows, or nil on failure
---@return string|nil err the database's error message
function conn:query_params(sql, ...) end

--- Another name for `conn:exec`.
---@async
---@param sql string one statement, or a script when no parameters are given
---@param ... nil|boolean|number|string values for the statement's placeholders
---@return lunet.db.ExecResult|nil result counts of what the SQL did, or nil on failure
---@return string|nil err the database's error message
function conn:exec_params(sql, ...) end

--- Escapes `s` the way this connection's driver does; the same as
--- `escape(conn, s)`.
---@param s string|number the text to escape
---@return string escaped the text, ready to be put between single quotes
function conn:escape(s) end

--- Closes the connection; the same as `close(conn)`.
function conn:close() end

--- One result row: column name to value. A NULL value is an absent key.
---@alias lunet.db.Row table<string, string|number|boolean>

--- What `exec` returns.
---@class lunet.db.ExecResult
---@field affected_rows number how many rows the statements changed
---@field last_insert_id number the id of the row most recently inserted on this connection, as the database reports it
