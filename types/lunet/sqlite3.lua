---@meta lunet.sqlite3

--- The SQLite driver, a library of its own (`lunet/sqlite3.so`) built on the
--- system's libsqlite3; requiring it loads the core if needed. Its functions
--- are those of every driver (see `lunet.db.Driver`), with these SQLite
--- specifics: placeholders are `?`; each value of a row has the type of what
--- is stored in it (SQLite lets one column hold several types), integers being
--- exact up to 2^53; `exec` without parameters runs every statement of a
--- script, `CREATE TRIGGER ... BEGIN ... END;` included, and its
--- `affected_rows` counts the rows the statements changed directly (not those
--- changed by triggers); `escape` doubles every `'`. A statement whose wait
--- times out or is cancelled, or that runs while its connection is closed, is
--- stopped with `sqlite3_interrupt` (it fails with `"interrupted"`); the
--- connection stays usable.
---@class lunet.sqlite3: lunet.db.Driver
---@field tx lunet.db.Tx the transaction helper, also `require("lunet.sqlite3_tx")`
local sqlite3 = {}

--- Opens an SQLite database, creating the file if it does not exist.
--- `params` is the file's path or a table with a `path` field; with no
--- argument, or no `path`, the database is `":memory:"`, a private in-memory
--- one. The table is read raw (its metatable is never consulted); other
--- fields are ignored. Raises if `params` is neither
--- a string nor a table, or `path` is not a string.
---@async
---@param params? string|lunet.sqlite3.OpenParams the database's path, or a table holding it
---@return lunet.sqlite3.Connection|nil conn the new connection, or nil on failure
---@return string|nil err SQLite's message
---@return string|nil code the extended result code name, such as `"SQLITE_CANTOPEN"`
function sqlite3.open(params) end

--- The table form of `sqlite3.open`'s argument.
---@class lunet.sqlite3.OpenParams
---@field path? string the database file, or `":memory:"` (the default)

--- A connection to an SQLite database. `tostring(conn)` gives
--- `sqlite3 connection (0x...)` or `sqlite3 connection (closed)`.
---@class lunet.sqlite3.Connection: lunet.db.Connection

return sqlite3
