---@meta lunet.mysql

--- The MySQL/MariaDB driver, a library of its own (`lunet/mysql.so`) built on
--- MariaDB Connector/C; requiring it loads the core if needed. Its functions
--- are those of every driver (see `lunet.db.Driver`), with these MySQL
--- specifics: placeholders are `?` and make the statement a native prepared
--- statement (prepared once per connection and reused); without parameters
--- SQL goes over the text protocol, so `exec` runs scripts of several
--- statements and `START TRANSACTION`, `COMMIT`, `ROLLBACK`, `SAVEPOINT` work,
--- and `query` on a script returns its first result set. Integers of every
--- width (and BOOLEAN as 0/1) are numbers, exact up to 2^53; FLOAT and DOUBLE
--- are numbers; DECIMAL, dates, times, JSON, BIT, ENUM and SET are the
--- server's text; text and blobs are strings with every byte, of any length.
--- `escape(conn, s)` escapes as that connection would (its character set,
--- and doubled quotes under `NO_BACKSLASH_ESCAPES`) without waiting for it;
--- `escape(s)` escapes for utf8mb4. A connection the server dropped is never
--- reconnected: the statement that notices gets the library's message and
--- every later call `nil, "connection is broken: <message>"`. Empty SQL
--- returns `nil, "Query was empty"`, as blank SQL does. `LOAD DATA LOCAL
--- INFILE` is refused: no file of the client's is ever uploaded. A statement
--- whose wait times out or is cancelled, or that runs while its connection is
--- closed, is stopped with `KILL QUERY` over a short side connection (same
--- host, port, socket, user, password); it fails with `"Query execution was
--- interrupted"` and the connection stays usable.
---@class lunet.mysql: lunet.db.Driver
---@field tx lunet.db.Tx the transaction helper, also `require("lunet.mysql_tx")`
local mysql = {}

--- Connects to a MySQL or MariaDB server. Every field is passed to the
--- library as data (a NUL byte in one gives `nil, err`). `host = "localhost"`,
--- or a `socket` without a host, uses the server's Unix socket; a string
--- argument is the host (or, containing `/`, the socket path). The table is
--- read raw (its metatable is never consulted); other fields are ignored.
--- Raises if `params` is neither a table nor a string, or a field has the
--- wrong type.
---@async
---@param params? string|lunet.mysql.OpenParams the host, or a table of connection parameters
---@return lunet.mysql.Connection|nil conn the new connection, or nil on failure
---@return string|nil err the server's or the library's message
---@return string|nil code `"<errno>/<SQLSTATE>"`, such as `"1045/28000"` (access denied)
function mysql.open(params) end

--- The table form of `mysql.open`'s argument.
---@class lunet.mysql.OpenParams
---@field host? string the server's host name or address (default `"127.0.0.1"`)
---@field port? integer the server's TCP port (default 3306)
---@field user? string the user name (default: the login name of the process)
---@field password? string the password (default: none)
---@field database? string the default database (default: none)
---@field charset? string the connection's character set (default `"utf8mb4"`)
---@field socket? string the path of the server's Unix socket
---@field connect_timeout? integer seconds to wait for the connection, handshake and login included (absent or 0: the default, 10)

--- A connection to a MySQL or MariaDB server. `tostring(conn)` gives
--- `mysql connection (0x...)` or `mysql connection (closed)`.
---@class lunet.mysql.Connection: lunet.db.Connection

return mysql
