---@meta lunet.postgres

--- The PostgreSQL driver, a library of its own (`lunet/postgres.so`) built on
--- libpq; requiring it loads the core if needed. Its functions are those of
--- every driver (see `lunet.db.Driver`), with these PostgreSQL specifics:
--- placeholders are `$1, $2, ...` and the statement is prepared once per
--- connection and reused; without parameters `exec` runs a whole script.
--- Parameters: nil is NULL, booleans are booleans, whole numbers bigint,
--- other numbers double precision (sent in binary, no digit lost), strings
--- are typed by the server (raw bytes for a bytea parameter; elsewhere a
--- string with a NUL byte is refused). Results: integer types and floats are
--- numbers, numeric the nearest double, boolean a boolean, bytea the raw
--- bytes, every other type its text form, NULL an absent key.
--- `last_insert_id` is 0 unless the statement returns rows whose first column
--- is an integer (`INSERT ... RETURNING id`). Statements waiting on one
--- connection are pipelined. A lost connection is never reconnected: every
--- later call returns `nil, "connection is broken: <message>"`. `close`
--- cancels a running statement, and so does a statement's wait that times
--- out or is cancelled (a cancel request; the statement fails with
--- `"canceling statement due to user request"` and the connection stays
--- usable; inside a transaction, the transaction is aborted).
---@class lunet.postgres: lunet.db.Driver
---@field tx lunet.db.Tx the transaction helper, also `require("lunet.postgres_tx")`
local postgres = {}

--- Connects to a PostgreSQL server. Each field goes to libpq as a
--- keyword/value pair of its own, never pasted into a connection string (a
--- NUL byte in one gives `nil, err`); fields left out fall back to libpq's
--- usual sources (`PGUSER`, `PGPASSWORD`, `~/.pgpass`). The table is read raw
--- (its metatable is never consulted); other fields are ignored. Raises if `params` is not a table (or nil), or a field
--- has the wrong type.
---@async
---@param params? lunet.postgres.OpenParams the connection parameters
---@return lunet.postgres.Connection|nil conn the new connection, or nil on failure
---@return string|nil err libpq's full message
---@return string|nil code the SQLSTATE when the server sent one (libpq reports failures to connect without one)
function postgres.open(params) end

--- The table form of `postgres.open`'s argument.
---@class lunet.postgres.OpenParams
---@field host? string host name, address, or Unix-socket directory (default `"127.0.0.1"`)
---@field port? integer the server's port (default 5432)
---@field user? string the role to connect as
---@field password? string the password
---@field database? string the database to connect to
---@field sslmode? string libpq's `sslmode` (`"disable"`, `"prefer"`, `"require"`, ...)
---@field connect_timeout? integer seconds to wait for the connection, login included (absent or 0: 10; libpq counts 1 as 2)

--- A connection to a PostgreSQL server.
---@class lunet.postgres.Connection: lunet.db.Connection

return postgres
