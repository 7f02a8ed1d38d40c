---@meta lunet.udp

--- UDP sockets over IPv4 and IPv6. A socket is a userdata handle made by
--- `bind`, and every function of this module can also be called as a method
--- of it (`sock:recv()`, `sock:send(host, port, data)`). `tostring(sock)` is
--- `udp socket: 0x...` or `udp socket (closed)`; a socket the program drops
--- without closing is closed when it is collected.
---
--- A bound socket receives from the moment it is bound until it is closed,
--- and keeps `lunet.run()` going meanwhile. Datagrams that arrive while no
--- coroutine waits in `recv` are queued: up to 1024 of them by default (see
--- the `queue` option of `bind`) and never more than 8 MiB of payload. When
--- a new datagram does not fit, the oldest queued ones are dropped to make
--- room, and counted in `stats(sock).dropped`.
---
--- Passing something that is not a UDP handle never crashes: it gives
--- `nil, "invalid udp handle"` (`nil, nil, "invalid udp handle"` for `recv`
--- and `getsockname`). Errors from the operating system come back as libuv's
--- text.
---@class lunet.udp
local udp = {}

--- Creates a UDP socket bound to `host` and `port` and starts receiving.
--- Does not yield. `host` is an IPv4 or IPv6 address or a name such as
--- `"localhost"`; `port` is 0 to 65535, 0 meaning any free port (ask
--- `getsockname` which one). Only loopback addresses may be bound unless the
--- program runs under `lunet-run --dangerously-skip-loopback-restriction`;
--- otherwise the result is `nil, "binding to non-loopback addresses requires
--- --dangerously-skip-loopback-restriction flag"`. Other errors include
--- `"failed to bind: address already in use"` and `"invalid host or port"`.
--- Raises if `options` is not a table or its `queue` is not a whole number
--- from 1 to 1048576.
---@param host string the address or name to bind
---@param port integer the port, 0 to 65535 (0 picks a free one)
---@param options? lunet.udp.BindOptions settings for the new socket
---@return lunet.udp.Socket|nil sock the bound socket, or nil on failure
---@return string|nil err why it failed
function udp.bind(host, port, options) end

--- Sends one datagram to `host` and `port` without waiting: the kernel gets
--- it at once, or, when it cannot take it yet, lunet keeps a copy and sends
--- it from the loop (in order with later sends). `true` means the datagram
--- was handed over, not that it arrived. `host` is an address or a name (a
--- name is looked up on every call, blocking the loop briefly: prefer
--- addresses); `port` is 1 to 65535. Payloads larger than UDP allows (65507
--- bytes over IPv4, 65527 over IPv6) give
--- `nil, "datagram too large: <n> bytes (at most <max> over IPv4)"`. Other
--- errors include `"udp closed"` and `"invalid host or port"`. Raises if
--- `data` is neither a string nor a number.
---@param sock lunet.udp.Socket the socket to send from
---@param host string the destination address or name
---@param port integer the destination port, 1 to 65535
---@param data string|number the payload (any bytes, NULs included; may be empty)
---@return true|nil ok true once the datagram is handed over, nil on failure
---@return string|nil err why it failed
function udp.send(sock, host, port, data) end

--- Returns the oldest queued datagram, or waits for the next one. An empty
--- datagram gives `""`. Only one coroutine may wait on a socket at a time; a
--- second gets `nil, nil, "recv already pending"`. Closing the socket wakes
--- the waiter with `nil, nil, "udp closed"` on the next loop iteration, which
--- is also the answer on an already closed socket. When the socket's limit
--- (see `settimeout`) or a `lunet.deadline` runs out first, the result is
--- `nil, nil, "timeout"`; a datagram that arrives later stays queued for the
--- next `recv`.
---@async
---@param sock lunet.udp.Socket the socket to receive on
---@return string|nil data the datagram's payload, or nil on failure
---@return string|nil host the sender's IP address (IPv6 without brackets)
---@return integer|string|nil port the sender's port, or the error message
function udp.recv(sock) end

--- Closes a socket; does not yield and can be called from anywhere, any
--- number of times. Receiving stops at once, queued datagrams are discarded
--- and a waiting `recv` gets `nil, nil, "udp closed"` (on the next loop
--- iteration). Datagrams that `send`
--- had to keep for later still go out before the socket really closes.
--- Returns `true` for a UDP handle, `nil, "invalid udp handle"` for anything else.
---@param sock lunet.udp.Socket the socket to close
---@return true|nil ok true for a UDP handle
---@return string|nil err `"invalid udp handle"` when `sock` is not one
function udp.close(sock) end

--- The address the socket is bound to, as two values: the IP address and
--- the port. Does not yield. On failure `nil, nil, err` (`"udp closed"` for a
--- closed socket).
---@param sock lunet.udp.Socket the socket
---@return string|nil host the local IP address, or nil on failure
---@return integer|nil port the local port, or nil on failure
---@return string|nil err why it failed
function udp.getsockname(sock) end

--- Counters of a socket, also after it was closed. Does not yield.
---@param sock lunet.udp.Socket the socket
---@return lunet.udp.Stats|nil stats the counters, or nil for a value that is not a UDP handle
---@return string|nil err `"invalid udp handle"`
function udp.stats(sock) end

--- Sets the time limit of each later `recv` on the socket, in milliseconds:
--- a `recv` that waits longer returns `nil, nil, "timeout"`. `nil` removes
--- the limit. A `recv` already waiting keeps the limit it started with. Does
--- not yield; raises if `ms` is not a valid time (negative, NaN, infinite,
--- not a number); returns `nil, "invalid udp handle"` if `sock` is not a UDP
--- handle; on a closed socket it does nothing.
---@param sock lunet.udp.Socket the socket
---@param ms? number the limit in milliseconds, or nil for none
---@return nil ok nothing when `sock` is a UDP handle
---@return string|nil err `"invalid udp handle"` otherwise
function udp.settimeout(sock, ms) end

--- The options `udp.bind` accepts.
---@class lunet.udp.BindOptions
---@field queue? integer how many datagrams to queue while nobody waits in `recv` (1 to 1048576, default 1024)

--- What `udp.stats` returns.
---@class lunet.udp.Stats
---@field received number datagrams received by the socket
---@field dropped number datagrams dropped from the full receive queue (the oldest first)
---@field queued number datagrams waiting in the receive queue now
---@field queue_size number the receive queue's bound, in datagrams
---@field sent number datagrams `send` accepted
---@field send_queued number datagrams kept for later that the kernel has not taken yet
---@field send_errors number datagrams kept for later that then failed to go out

--- A bound UDP socket, made by `udp.bind`.
---@class lunet.udp.Socket
local sock = {}

--- Sends one datagram; the same as `udp.send(sock, host, port, data)`.
---@param host string the destination address or name
---@param port integer the destination port, 1 to 65535
---@param data string|number the payload
---@return true|nil ok true once the datagram is handed over, nil on failure
---@return string|nil err why it failed
function sock:send(host, port, data) end

--- Receives one datagram; the same as `udp.recv(sock)`.
---@async
---@return string|nil data the datagram's payload, or nil on failure
---@return string|nil host the sender's IP address
---@return integer|string|nil port the sender's port, or the error message
function sock:recv() end

--- Closes the socket; the same as `udp.close(sock)`.
---@return true|nil ok true
---@return string|nil err never set for a socket
function sock:close() end

--- The bound address; the same as `udp.getsockname(sock)`.
---@return string|nil host the local IP address, or nil on failure
---@return integer|nil port the local port, or nil on failure
---@return string|nil err why it failed
function sock:getsockname() end

--- The socket's counters; the same as `udp.stats(sock)`.
---@return lunet.udp.Stats|nil stats the counters
---@return string|nil err never set for a socket
function sock:stats() end

--- Sets the limit of each later `recv`; the same as `udp.settimeout(sock, ms)`.
---@param ms? number the limit in milliseconds, or nil for none
function sock:settimeout(ms) end

return udp
