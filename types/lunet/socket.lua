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
--- `settimeout`); the connections it accepts start with no limits.
--- `options.backlog` (1 to 65535, default 511) is the kernel's queue of
--- connections not yet taken by libuv; `options.reuseport` (TCP) sets
--- SO_REUSEPORT, so several listeners (processes) can share one port and the
--- kernel spreads connections between them; `options.ipv6only` (TCP) makes a
--- listener on an IPv6 address take IPv6 only. The
--- options table comes after `port` for TCP and right after the path for Unix
--- (`socket.listen("unix", path, {timeout = ms})`).
---
--- Errors include `"failed to bind: address already in use"`,
--- `"failed to listen: ..."`, `"invalid host or port"`,
--- `"invalid unix socket path"` and `"only tcp and unix are supported"`.
--- Raises if the options are not a table, their `timeout` is not a valid
--- time, `backlog` is not an integer from 1 to 65535, or `reuseport` /
--- `ipv6only` is not a boolean (or is set for a Unix listener).
---@param protocol "tcp"|"unix" the kind of socket
---@param host string the address or name to bind (TCP), or the socket file's path (Unix)
---@param port? integer the TCP port, 0 to 65535 (0 picks a free one); for Unix, leave it out and pass `options` third
---@param options? lunet.socket.ListenOptions `timeout`: the limit of each `accept` wait, in ms; `backlog`, `reuseport`, `ipv6only`
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
---@param options? lunet.socket.ConnectOptions `timeout`: the limit of the connect (and TLS handshake), in ms; `tls`
---@return lunet.socket.Connection|nil conn the connected socket, or nil on failure
---@return string|nil err why it failed, e.g. `"connection refused"`, `"timeout"` or `"tls: ..."`
function socket.connect(host, port, options) end

--- Upgrades a connection to TLS (STARTTLS) and waits for the handshake;
--- every read format, write, timeout and cancellation then works on the
--- plaintext as before. As a client (the default), `options` are those of a
--- TLS connect (`server_name` defaults to the peer's IP address; give the host
--- name to verify a certificate issued for a name). With `options.server =
--- true` our side is the server (`cert_file`, `key_file`, `alpn`,
--- `client_ca_file`). The handshake is bounded by the connection's read limit
--- (`settimeout`) and `lunet.deadline`. Returns `true`, or `nil, err`:
--- `"tls: <reason>"` (verification, protocol, the peer closing), `"timeout"`,
--- `"tls: the connection already speaks TLS"`, `"socket closed"`. Raises for
--- options of the wrong type. On failure the connection should be closed.
---@async
---@param conn lunet.socket.Connection a plain connection
---@param options? true|lunet.socket.TlsOptions the TLS options (`true`: verify against the system store)
---@return true|nil ok true once the handshake is done
---@return string|nil err why it failed
function socket.starttls(conn, options) end

--- What the TLS session of a connection negotiated, or `nil` for a plain
--- connection (`nil, err` for a closed or invalid handle). Fields:
--- `version` (`"TLSv1.2"`, `"TLSv1.3"`), `cipher` (e.g.
--- `"TLS13_AES_128_GCM_SHA256"`), `alpn` (the protocol, if any),
--- `server_name` (on a server: the SNI name the client asked for),
--- `peer_subject` (the subject of the peer's certificate, RFC 4514 text such
--- as `"CN=localhost"`), `peer_certificate` (that certificate, DER bytes),
--- `resumed` (the handshake resumed an earlier session). Fields not known yet
--- (during the handshake) are absent. Does not yield.
---@param conn lunet.socket.Connection a connection
---@return lunet.socket.TlsInfo|nil info the session's parameters, or nil
---@return string|nil err why it failed
function socket.tlsinfo(conn) end

--- Reads from a connection, waiting until the request can be answered.
---
--- `fmt` says what to read:
--- - nothing or `nil`: the next bytes that arrived, at most the read size
---   (see `set_read_buffer_size` and the `read_buffer_size` option); bytes
---   already buffered come first. At the end of the stream `nil, nil` (C
---   lunet's values), and so on every later call.
--- - an integer `n` (0 to 2^31 - 1): exactly `n` bytes (`0` gives `""` at once).
--- - `"*l"`: a line without its end (`\n` or `\r\n`; a lone `\r` is data).
--- - `"*L"`: a line with its end.
--- - `"*a"`: everything until the peer ends the stream (`""` if nothing is left).
--- (`"l"`, `"L"` and `"a"` are accepted too.)
---
--- Lines are bounded by `options.max` bytes, their end included (default
--- 64 KiB); `"*a"` only when `options.max` is given. A frame longer than its
--- bound gives `nil, "too long", partial` (`partial` = the first `max` bytes).
---
--- Framed reads (every `fmt` but nothing) that fail return the bytes
--- received so far as a third value, and those bytes stay buffered, so the
--- same read tried again still gets the whole frame: `nil, "timeout",
--- partial` (the read limit or a `lunet.deadline` ran out), `nil, "closed",
--- partial` (the peer ended the stream mid-frame), `nil, err, partial` (a
--- system error such as `"connection reset by peer"`). Other failures:
--- `nil, "socket closed"` (our side closed it; a waiting reader is woken on
--- the next loop iteration), `nil, "another read already in progress"`.
--- A cancelled read loses nothing either.
---
--- Raises for a format that does not exist, a size that is not an integer
--- from 0 to 2^31 - 1, or options that are not a table with an integer `max` >= 1
--- (options are taken with `"*l"`, `"*L"` and `"*a"` only).
---@async
---@param conn lunet.socket.Connection the connection to read from
---@param fmt? integer|"*l"|"*L"|"*a" what to read (see above); nil: what arrived
---@param options? lunet.socket.ReadOptions `max`: the bound of a line or of `"*a"`
---@return string|nil data the bytes read; nil at end of stream or on failure
---@return string|nil err nil at end of stream (plain reads), else why the read failed
---@return string|nil partial for framed reads that failed: the bytes received so far (still buffered)
function socket.read(conn, fmt, options) end

--- Reads up to a delimiter: returns the bytes before `delim` (with it when
--- `options.inclusive`), and consumes the delimiter either way. The bytes up
--- to and including the delimiter are bounded by `options.max` (default
--- 1 MiB): past it, `nil, "too long", partial`. Fails like a framed `read`
--- (`nil, "timeout" | "closed" | err, partial`, the bytes staying buffered).
--- Raises if `delim` is not a non-empty string, is longer than `max`, or the
--- options are wrong.
---@async
---@param conn lunet.socket.Connection the connection to read from
---@param delim string the delimiter (any bytes, at least one)
---@param options? lunet.socket.UntilOptions `inclusive`, `max`
---@return string|nil data the bytes before the delimiter (or through it), or nil on failure
---@return string|nil err why the read failed
---@return string|nil partial the bytes received so far (still buffered)
function socket.read_until(conn, delim, options) end

--- Puts `data` back in front of the connection's buffered bytes: the next
--- read returns it first. Does not yield. Returns `true`, or `nil, "socket
--- closed"` / `nil, "another read already in progress"` (a coroutine is
--- waiting to read on the connection). Raises if `data` is not a string.
---@param conn lunet.socket.Connection the connection
---@param data string the bytes to read again
---@return true|nil ok true on success
---@return string|nil err why it failed
function socket.unread(conn, data) end

--- Sends all of `data`, waiting only while the kernel cannot take more.
--- `data` is a string, a number (sent as its string form), or an array of
--- strings and numbers sent in order as one vectored write (nothing is
--- concatenated; an empty array sends nothing). It returns a single value:
--- `nil` when every byte has been handed over, or the error message
--- (`"broken pipe"`, `"connection reset by peer"`, `"socket closed"`,
--- `"socket shut down"` after `shutdown`, ...). Writes from several coroutines
--- on one connection go out whole and in the order they were called. A peer
--- that has gone away never kills the process with SIGPIPE. With a send limit
--- (see `settimeouts`) or a `lunet.deadline`, a write the kernel could not
--- take at once returns `"timeout"` when the limit runs out; its bytes stay
--- queued and still go out in the background. Raises if `data` is none of
--- these, naming the first array element that is not a string or number.
---@async
---@param conn lunet.socket.Connection the connection to write to
---@param data string|number|(string|number)[] the bytes to send (any bytes, NULs included)
---@return string|nil err nil on success, otherwise the error message
function socket.write(conn, data) end

--- Half-close: ends the write side of the connection once every queued write
--- has gone out (the peer reads end of stream), and waits for that. Reading
--- goes on. Returns `true`, or `nil, err` (`"socket shut down"` the second
--- time, `"socket closed"`, `"timeout"` with a send limit, or the system's error).
---@async
---@param conn lunet.socket.Connection the connection
---@return true|nil ok true once the write side is shut down
---@return string|nil err why it failed
function socket.shutdown(conn) end

--- Sets a socket option on a listener or a connection. Does not yield.
--- - `"nodelay"` (boolean, TCP): TCP_NODELAY. On by default for accepted and
---   connected TCP sockets, so small writes leave at once.
--- - `"keepalive"` (seconds >= 1, or false, TCP): TCP keep-alive probes after
---   that many idle seconds.
--- - `"sndbuf"`, `"rcvbuf"` (bytes): the kernel's buffer sizes (Linux reports
---   back twice the value set).
--- - `"linger"` (seconds 0 to 65535, or false): SO_LINGER; `0` makes `close`
---   reset the connection.
--- - `"read_buffer_size"` (1 to 16 MiB): this connection's read size (the
---   most a plain `read` returns), instead of `set_read_buffer_size`'s default.
--- Returns `true`, or `nil, err` (`"socket closed"`, `"invalid socket
--- handle"`, a system error). Raises for an unknown option, a TCP option on
--- a Unix socket, or a value the option does not take.
---@param handle lunet.socket.Handle a listener or a connection
---@param name "nodelay"|"keepalive"|"sndbuf"|"rcvbuf"|"linger"|"read_buffer_size" the option
---@param value boolean|integer see above
---@return true|nil ok true on success
---@return string|nil err why it failed
function socket.setoption(handle, name, value) end

--- Reads a socket option (see `setoption`): a boolean for `"nodelay"`,
--- seconds or `false` for `"keepalive"` and `"linger"`, bytes for the others.
--- Returns `nil, err` like `setoption`; raises for an unknown option.
---@param handle lunet.socket.Handle a listener or a connection
---@param name "nodelay"|"keepalive"|"sndbuf"|"rcvbuf"|"linger"|"read_buffer_size" the option
---@return boolean|integer|nil value the option's value, or nil on failure
---@return string|nil err why it failed
function socket.getoption(handle, name) end

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

--- Sets how many bytes one plain `read` may return, for every connection of
--- the program (64 KiB unless changed) that has not set its own with
--- `setoption(conn, "read_buffer_size", n)`. Raises unless `n` is a whole
--- number from 1 to 16 MiB (16777216).
---@param n integer the read size in bytes
function socket.set_read_buffer_size(n) end

--- Sets one time limit, in milliseconds, for every later wait on the handle:
--- each `read`, `write` and (on a listener) `accept` then fails with
--- `"timeout"` if it waits longer than `ms`. `nil` removes the limits. (It
--- sets the connect limit too, as OpenResty's does, but a lunet handle only
--- exists once connected: limit a connect with `connect`'s options.)
--- A wait already in progress keeps the limit it started with. Does not
--- yield. Raises if `ms` is not a valid time (negative, NaN, infinite, not a
--- number); returns `nil, "invalid socket handle"` if `handle` is not a
--- socket; on a closed handle it does nothing.
---@param handle lunet.socket.Handle a listener or a connection
---@param ms? number the limit in milliseconds, or nil for none
---@return nil ok nothing when `handle` is a socket
---@return string|nil err `"invalid socket handle"` otherwise
function socket.settimeout(handle, ms) end

--- Sets the three time limits of a handle separately, in OpenResty's order:
--- `connect_ms`, `send_ms` for each write that has to wait for the kernel,
--- `read_ms` for each `read` (and, on a listener, each `accept`). `nil` leaves
--- that kind of wait without a limit. `connect_ms` is accepted for
--- OpenResty's signature but has no effect, since a lunet handle only exists
--- once connected: limit a connect with `connect`'s options. Does not yield.
--- Raises and fails as `settimeout` does.
---@param handle lunet.socket.Handle a listener or a connection
---@param connect_ms? number kept for OpenResty's order; no effect (see above)
---@param send_ms? number the limit of each write's wait, or nil
---@param read_ms? number the limit of each read or accept wait, or nil
---@return nil ok nothing when `handle` is a socket
---@return string|nil err `"invalid socket handle"` otherwise
function socket.settimeouts(handle, connect_ms, send_ms, read_ms) end

--- A new parking lot for idle connections: connections parked in it wait
--- for their next input without a task, and worker tasks take them with
--- `lot:next()` when it arrives. Raises for options that are not a table or
--- an invalid `max_waiting`. Does not yield.
---@param options? lunet.socket.ParkingOptions `max_waiting`
---@return lunet.socket.ParkingLot lot the new lot
function socket.parking(options) end

--- Parks a connection: it waits in `lot` for its next input (or its end, or
--- `timeout_ms`), holding no task. It leaves the lot when `lot:next()` hands
--- it out or when it is closed; reading it meanwhile returns
--- `nil, "the connection is parked"`. Input already buffered makes it ready
--- at once. Does not yield. Raises for a `lot` that is not a parking lot or
--- an invalid time.
---@param conn lunet.socket.Connection the connection to park
---@param lot lunet.socket.ParkingLot the lot
---@param timeout_ms? number the longest it may wait in the lot (milliseconds), or nil for no limit
---@return true|nil ok true once parked
---@return string|nil err `"socket closed"`, `"the connection is already parked"`, `"parking lot closed"`, `"another read already in progress"`, `"invalid socket handle"`
function socket.park(conn, lot, timeout_ms) end

--- Options of `socket.parking`.
---@class lunet.socket.ParkingOptions
---@field max_waiting? integer how many tasks may wait in `lot:next()` at once (1 to 1000000, default 16); one more gets `nil, "surplus"`

--- A parking lot (`socket.parking`).
---@class lunet.socket.ParkingLot
local lot = {}

--- Waits for a connection of the lot with news and hands it out (it leaves
--- the lot). Returns `conn, data, nil, waiting` with the bytes that arrived,
--- or `conn, nil, err, waiting` when the connection ended (`"closed"`), its
--- time in the lot ran out (`"timeout"`) or it failed; `waiting` is how many
--- other tasks still wait in `next` (0: start another worker before doing
--- anything that waits). `nil, "closed"` once the lot is closed, `nil,
--- "surplus"` at once when `max_waiting` tasks already wait, `nil,
--- "timeout"` when a `lunet.deadline` passes. Input that arrives while
--- tasks wait goes to the one that started waiting last.
---@async
---@return lunet.socket.Connection|nil conn the connection, or nil
---@return string|nil data the bytes that arrived
---@return string|nil err why there are no bytes
---@return integer|nil waiting the other tasks still waiting
function lot:next() end

--- The number of tasks waiting in `lot:next()`. Does not yield.
---@return integer n the tasks waiting
function lot:waiting() end

--- The connections in the lot. Does not yield.
---@return integer parked connections waiting for input
---@return integer ready connections with news nobody has taken yet
function lot:count() end

--- Closes the lot: closes every connection in it and ends every `next` wait
--- with `nil, "closed"` (on the next loop iteration). Dropping the lot does
--- the same. Does not yield; calling it again returns 0.
---@return integer n how many connections it closed
function lot:close() end

--- The options `socket.connect` and `socket.listen` accept.
---@class lunet.socket.Options
---@field timeout? number for `connect`, the limit of the whole connect; for `listen`, of each `accept` wait (milliseconds)

--- The options of `socket.connect`.
---@class lunet.socket.ConnectOptions: lunet.socket.Options
---@field tls? true|lunet.socket.TlsOptions connect with TLS (handshake included in `timeout`); `true`: defaults

--- TLS options (clients: `connect`'s `tls`, `starttls`; servers: `listen`'s `tls`).
--- Clients verify the server's certificate against the system store (or
--- `ca_file`) and its name (`server_name`, by default the host connected to);
--- a failure is `nil, "tls: <reason>"`, never a silent unverified connection.
---@class lunet.socket.TlsOptions
---@field server_name? string client: the name sent (SNI) and verified
---@field verify? boolean client: false accepts any certificate (insecure; tests only). Default true
---@field ca_file? string client: PEM file of the CAs to trust instead of the system store
---@field cert_file? string server: certificate chain (PEM); client: a client certificate (mTLS)
---@field key_file? string the private key (PEM) of `cert_file`
---@field alpn? string|string[] protocols to offer (client) or accept (server), in order of preference
---@field client_ca_file? string server: require client certificates issued by these CAs (mTLS)
---@field server? boolean `starttls` only: our side is the server

--- What `socket.tlsinfo` returns.
---@class lunet.socket.TlsInfo
---@field version? string `"TLSv1.2"` or `"TLSv1.3"`
---@field cipher? string the cipher suite
---@field alpn? string the negotiated protocol
---@field server_name? string on a server: the name the client asked for (SNI)
---@field peer_subject? string the subject of the peer's certificate (`"CN=localhost,O=..."`)
---@field peer_certificate? string the peer's certificate (DER)
---@field resumed boolean whether the session was resumed

--- The options of `socket.listen`.
---@class lunet.socket.ListenOptions: lunet.socket.Options
---@field backlog? integer the kernel's accept queue, 1 to 65535 (default 511)
---@field reuseport? boolean SO_REUSEPORT: several listeners may bind the same port (TCP)
---@field ipv6only? boolean an IPv6 listener takes IPv6 connections only (TCP)
---@field tls? lunet.socket.TlsOptions serve TLS: `cert_file`, `key_file` (required), `alpn`, `client_ca_file`; each accepted connection's handshake runs as its bytes arrive, and its first read waits for it

--- The options of `socket.read`.
---@class lunet.socket.ReadOptions
---@field max? integer the most bytes of a line (its end included; default 65536) or of `"*a"` (default: no bound)

--- The options of `socket.read_until`.
---@class lunet.socket.UntilOptions
---@field inclusive? boolean return the delimiter with the bytes (default false)
---@field max? integer the most bytes up to and including the delimiter (default 1048576)

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

--- Sets a socket option; the same as `socket.setoption(handle, name, value)`.
---@param name "nodelay"|"keepalive"|"sndbuf"|"rcvbuf"|"linger"|"read_buffer_size" the option
---@param value boolean|integer the option's value
---@return true|nil ok true on success
---@return string|nil err why it failed
function handle:setoption(name, value) end

--- Reads a socket option; the same as `socket.getoption(handle, name)`.
---@param name "nodelay"|"keepalive"|"sndbuf"|"rcvbuf"|"linger"|"read_buffer_size" the option
---@return boolean|integer|nil value the option's value, or nil on failure
---@return string|nil err why it failed
function handle:getoption(name) end

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

--- Reads bytes, a line, exactly n bytes or everything; the same as `socket.read(conn, fmt, options)`.
---@async
---@param fmt? integer|"*l"|"*L"|"*a" what to read; nil: what arrived
---@param options? lunet.socket.ReadOptions `max`
---@return string|nil data the bytes read; nil at end of stream or on failure
---@return string|nil err nil at end of stream (plain reads), else why the read failed
---@return string|nil partial for framed reads that failed: the bytes received so far
function conn:read(fmt, options) end

--- Reads up to a delimiter; the same as `socket.read_until(conn, delim, options)`.
---@async
---@param delim string the delimiter
---@param options? lunet.socket.UntilOptions `inclusive`, `max`
---@return string|nil data the bytes before the delimiter (or through it), or nil on failure
---@return string|nil err why the read failed
---@return string|nil partial the bytes received so far
function conn:read_until(delim, options) end

--- Puts bytes back in front of the buffer; the same as `socket.unread(conn, data)`.
---@param data string the bytes to read again
---@return true|nil ok true on success
---@return string|nil err why it failed
function conn:unread(data) end

--- Writes every byte of `data`; the same as `socket.write(conn, data)`.
---@async
---@param data string|number|(string|number)[] the bytes to send
---@return string|nil err nil on success, otherwise the error message
function conn:write(data) end

--- Upgrades to TLS; the same as `socket.starttls(conn, options)`.
---@async
---@param options? true|lunet.socket.TlsOptions the TLS options
---@return true|nil ok true once the handshake is done
---@return string|nil err why it failed
function conn:starttls(options) end

--- The TLS session's parameters; the same as `socket.tlsinfo(conn)`.
---@return lunet.socket.TlsInfo|nil info the session's parameters, or nil for a plain connection
---@return string|nil err why it failed
function conn:tlsinfo() end

--- Ends the write side; the same as `socket.shutdown(conn)`.
---@async
---@return true|nil ok true once the write side is shut down
---@return string|nil err why it failed
function conn:shutdown() end

--- The peer's address; the same as `socket.getpeername(conn)`.
---@return string|nil addr the peer's address, or nil on failure
---@return string|nil err why it failed
function conn:getpeername() end

return socket
