---@meta lunet.socket

--- Stream sockets: TCP over IPv4 and IPv6, and Unix-domain sockets. A socket
--- is a userdata handle, a listener or a connection, and every function of
--- this module can also be called as a method of a handle
--- (`conn:read()`, `listener:accept()`). `tostring(handle)` tells its kind
--- and whether it is closed (`tcp listener: 0x...`, `unix connection (closed)`);
--- a handle the program drops without closing is closed when it is collected.
---
--- Passing something that is not a socket handle never crashes: it gives
--- `nil, "invalid socket handle"`; a listener where a connection is expected
--- gives `nil, "not a connection"`. Errors from the operating system come
--- back as libuv's text, such as `"connection refused"` or `"broken pipe"`.
---
--- Time limits: `settimeout` and `settimeouts` give a handle limits for its
--- later waits, and `connect` and `listen` take one in an options table
--- (`{timeout = ms}`: for `connect` the limit of the connect only, for
--- `listen` that of each `accept`). A wait that runs out fails with `"timeout"` in the
--- call's usual shape (`nil, "timeout"` for `read`, `accept` and `connect`;
--- `"timeout"` for `write`); so does one cut short by `lunet.deadline`. The
--- handle stays usable: bytes that arrive later are read by the next `read`,
--- and the bytes of a write that timed out are still sent, in order, in the
--- background.
---@class lunet.socket
local socket = {}

--- Creates a listening socket and starts accepting connections in the
--- background; they queue up until `accept` takes them. Does not yield.
---
--- For `"tcp"`, `host` may be an IPv4 or IPv6 address or a name such as
--- `"localhost"`, and `port` (required) is 0 to 65535, 0 meaning any free port
--- (ask `getsockname` which one). Only loopback addresses may be bound unless
--- the program runs under `lunet-run --dangerously-skip-loopback-restriction`;
--- otherwise the result is `nil, "binding to non-loopback addresses requires
--- --dangerously-skip-loopback-restriction flag"`. For `"unix"`, `host` is the
--- socket file's path and `port` is ignored; a stale socket file there is
--- removed first, anything else at that path makes the call fail.
---
--- `options.timeout` limits each wait of `accept` on the new listener (like
--- `settimeout`); the connections it accepts start with no limits. The
--- options table comes after `port` for TCP and right after the path for Unix
--- (`socket.listen("unix", path, {timeout = ms})`).
---
--- Errors include `"failed to bind: address already in use"`,
--- `"failed to listen: ..."`, `"invalid host or port"`,
--- `"invalid unix socket path"` and `"only tcp and unix are supported"`.
--- Raises if the options are not a table or their `timeout` is not a valid
--- time.
---@param protocol "tcp"|"unix" the kind of socket
---@param host string the address or name to bind (TCP), or the socket file's path (Unix)
---@param port? integer the TCP port, 0 to 65535 (0 picks a free one); for Unix, leave it out and pass `options` third
---@param options? lunet.socket.Options `timeout`: the limit of each `accept` wait, in ms
---@return lunet.socket.Listener|nil listener the new listener, or nil on failure
---@return string|nil err why it failed
function socket.listen(protocol, host, port, options) end

--- Takes the oldest queued connection from a listener, waiting for one if
--- none has arrived yet. Only one coroutine may wait on a listener at a time;
--- a second gets `nil, "another accept already in progress"`. Closing the
--- listener wakes the waiter with `nil, "listener closed"` (on the next loop
--- iteration), which is also the answer for an already closed listener.
--- Anything but a listener gives `nil, "not a listening socket"`. With a
--- read limit on the listener (`listen`'s `timeout`, `settimeout`), a wait
--- that runs out gives `nil, "timeout"`.
---@async
---@param listener lunet.socket.Listener the listener to take a connection from
---@return lunet.socket.Connection|nil conn the accepted connection, or nil on failure
---@return string|nil err why there is no connection
function socket.accept(listener) end

--- Opens a connection. A `host` containing a `/` is the path of a Unix
--- socket (and `port` is ignored); any other `host` is an IPv4 or IPv6
--- address or a name, looked up without blocking the loop, and every address
--- it resolves to is tried in turn. A missing or empty host, or a port outside
--- 1 to 65535, gives `nil, "invalid host or port"`. Connecting has no loopback
--- restriction.
---
--- `options.timeout` limits the whole connect, name lookup included: when it
--- runs out the call returns `nil, "timeout"` and the attempt is abandoned
--- (its socket is closed). The options table comes after `port`, or right
--- after the path for a Unix socket (`socket.connect(path, {timeout = ms})`).
--- It limits only the connect: give the connection limits for its reads and
--- writes with `settimeout`. Raises if the options are not a table or their
--- `timeout` is not a valid time.
---@async
---@param host string an address, a host name, or a Unix socket path
---@param port? integer the TCP port, 1 to 65535; for a Unix path, leave it out and pass `options` second
---@param options? lunet.socket.Options `timeout`: the limit of the connect, in ms
---@return lunet.socket.Connection|nil conn the connected socket, or nil on failure
---@return string|nil err why it failed, e.g. `"connection refused"` or `"timeout"`
function socket.connect(host, port, options) end

--- Returns the next bytes that arrived on the connection, waiting until some
--- have. One call returns at most the read size (see `set_read_buffer_size`).
--- At the end of the stream it returns `nil, nil`, and keeps doing so. Errors
--- come back as `nil, err`: `"socket closed"` (also for a reader waiting when
--- the connection is closed; it is resumed on the next loop iteration),
--- `"another read already in progress"` when another coroutine is already
--- waiting to read, `"timeout"` when the connection's read limit (see
--- `settimeout`) or a `lunet.deadline` runs out first, or the system's error.
--- Nothing is lost by a timeout: bytes that arrive later go to the next read.
---@async
---@param conn lunet.socket.Connection the connection to read from
---@return string|nil data the bytes read; nil at end of stream or on error
---@return string|nil err nil at end of stream, else why the read failed
function socket.read(conn) end

--- Sends all of `data`, waiting only while the kernel cannot take more. It
--- returns a single value: `nil` when every byte has been handed over, or the
--- error message (`"broken pipe"`, `"connection reset by peer"`,
--- `"socket closed"`, ...). Writes from several coroutines on one connection
--- go out whole and in the order they were called. A peer that has gone away
--- never kills the process with SIGPIPE. With a send limit (see
--- `settimeouts`) or a `lunet.deadline`, a write the kernel could not take at
--- once returns `"timeout"` when the limit runs out; its bytes stay queued and
--- still go out in the background. Raises if `data` is neither a string nor a
--- number (numbers are sent as their string form).
---@async
---@param conn lunet.socket.Connection the connection to write to
---@param data string|number the bytes to send (any bytes, NULs included)
---@return string|nil err nil on success, otherwise the error message
function socket.write(conn, data) end

--- Closes a listener or a connection; does not yield and can be called from
--- anywhere, any number of times. Every coroutine waiting on the handle is
--- woken with an error (`"socket closed"`, `"listener closed"`) on the next
--- loop iteration, never inside `close` itself. Closing a
--- listener also closes the connections it queued that nobody accepted, and
--- removes a Unix listener's socket file. Returns nothing for a socket
--- handle; for any other value it returns `nil, "invalid socket handle"`.
---@param handle lunet.socket.Handle the socket to close
---@return nil ok nothing is returned when `handle` is a socket; nil otherwise
---@return string|nil err `"invalid socket handle"` when `handle` is not a socket
function socket.close(handle) end

--- The address of the other end of a connection, as `"ip:port"` (IPv6
--- addresses in brackets: `"[::1]:8080"`), or `"unix"` for a Unix socket.
--- Does not yield.
---@param conn lunet.socket.Connection a connection
---@return string|nil addr the peer's address, or nil on failure
---@return string|nil err why it failed
function socket.getpeername(conn) end

--- The local address of a listener or connection. Does not yield. For TCP it
--- returns two values, the IP address and the port number; for a Unix socket
--- one value, the path; on failure `nil, err` (`"socket closed"` for a closed
--- handle).
---@param handle lunet.socket.Handle a listener or a connection
---@return string|nil addr the local IP address (TCP) or socket path (Unix); nil on failure
---@return integer|string|nil port the port number (TCP), nothing (Unix), or the error message
function socket.getsockname(handle) end

--- Sets how many bytes one read may return, for every connection of the
--- program (64 KiB unless changed). Raises unless `n` is a whole number from
--- 1 to 16 MiB (16777216).
---@param n integer the read size in bytes
function socket.set_read_buffer_size(n) end

--- Sets one time limit, in milliseconds, for every later wait on the handle:
--- each `read`, `write` and (on a listener) `accept` then fails with
--- `"timeout"` if it waits longer than `ms`. `nil` removes the limits. (It
--- sets the connect limit too, as OpenResty's does, but a lunet handle only
--- exists once connected: limit a connect with `connect`'s options.)
--- A wait already in progress keeps the limit it started with. Does not
--- yield. Raises if `ms` is not a valid time (negative, NaN, infinite, not a
--- number) or `handle` is not a socket; on a closed handle it does nothing.
---@param handle lunet.socket.Handle a listener or a connection
---@param ms? number the limit in milliseconds, or nil for none
function socket.settimeout(handle, ms) end

--- Sets the three time limits of a handle separately, in OpenResty's order:
--- `connect_ms`, `send_ms` for each write that has to wait for the kernel,
--- `read_ms` for each `read` (and, on a listener, each `accept`). `nil` leaves
--- that kind of wait without a limit. `connect_ms` is accepted for
--- OpenResty's signature but has no effect, since a lunet handle only exists
--- once connected: limit a connect with `connect`'s options. Does not yield.
--- Raises as `settimeout` does.
---@param handle lunet.socket.Handle a listener or a connection
---@param connect_ms? number kept for OpenResty's order; no effect (see above)
---@param send_ms? number the limit of each write's wait, or nil
---@param read_ms? number the limit of each read or accept wait, or nil
function socket.settimeouts(handle, connect_ms, send_ms, read_ms) end

--- The options `socket.connect` and `socket.listen` accept.
---@class lunet.socket.Options
---@field timeout? number for `connect`, the limit of the whole connect; for `listen`, of each `accept` wait (milliseconds)

--- What listeners and connections have in common. Every function of
--- `lunet.socket` is reachable as a method of any handle; the methods listed
--- on the handle types are the ones that make sense for them.
---@class lunet.socket.Handle
local handle = {}

--- Closes the handle; the same as `socket.close(handle)`.
function handle:close() end

--- The local address; the same as `socket.getsockname(handle)`.
---@return string|nil addr the local IP address (TCP) or socket path (Unix); nil on failure
---@return integer|string|nil port the port number (TCP), nothing (Unix), or the error message
function handle:getsockname() end

--- Sets one limit for every later wait; the same as `socket.settimeout(handle, ms)`.
---@param ms? number the limit in milliseconds, or nil for none
function handle:settimeout(ms) end

--- Sets the connect, send and read limits; the same as `socket.settimeouts(handle, ...)`.
---@param connect_ms? number kept for OpenResty's order; no effect
---@param send_ms? number the limit of each write's wait, or nil
---@param read_ms? number the limit of each read or accept wait, or nil
function handle:settimeouts(connect_ms, send_ms, read_ms) end

--- A listening socket, made by `socket.listen`.
---@class lunet.socket.Listener: lunet.socket.Handle
local listener = {}

--- Takes the next connection; the same as `socket.accept(listener)`.
---@async
---@return lunet.socket.Connection|nil conn the accepted connection, or nil on failure
---@return string|nil err why there is no connection
function listener:accept() end

--- A connected stream socket, made by `socket.connect` or `socket.accept`.
---@class lunet.socket.Connection: lunet.socket.Handle
local conn = {}

--- Reads the next bytes; the same as `socket.read(conn)`.
---@async
---@return string|nil data the bytes read; nil at end of stream or on error
---@return string|nil err nil at end of stream, else why the read failed
function conn:read() end

--- Writes every byte of `data`; the same as `socket.write(conn, data)`.
---@async
---@param data string|number the bytes to send
---@return string|nil err nil on success, otherwise the error message
function conn:write(data) end

--- The peer's address; the same as `socket.getpeername(conn)`.
---@return string|nil addr the peer's address, or nil on failure
---@return string|nil err why it failed
function conn:getpeername() end

return socket
