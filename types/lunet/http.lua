---@meta lunet.http

--- An HTTP/1.1 server (the `lunet-http` rock). `http.serve` listens; between
--- requests a connection waits in the server's parking lot
--- (`socket.parking`) without a task, and each request runs in a worker
--- task (reused; one more than the handlers waiting at once): keep-alive, pipelining,
--- chunked request and response bodies, `Expect: 100-continue`, size limits
--- and timeouts. Request heads are parsed by the `httparse` crate; the
--- socket I/O is `lunet.socket`'s, so every wait honours lunet's timeouts,
--- deadlines and cancellation.
---
--- Malformed requests get their status and a closed connection: 400
--- (malformed request line or header, obs-fold, missing or duplicate Host,
--- duplicate or invalid Content-Length, Content-Length with
--- Transfer-Encoding, bad chunk sizes), 414 (request line over
--- `limits.max_line`), 431 (head over `limits.max_head`, more fields than
--- `limits.max_headers`), 413 (body over `limits.max_body`), 408 (head not
--- complete within `timeouts.header` of its first byte, or a body wait over
--- `timeouts.body`), 417 (an expectation other than 100-continue), 501
--- (a transfer coding other than chunked), 505 (an HTTP version other than
--- 1.0 and 1.1).
---@class lunet.http
---@field reasons table<integer, string> the reason phrase of each status code the server knows
local http = {}

--- Starts a server on `opts.host` (default `"127.0.0.1"`) and `opts.port`
--- (0 picks a free port) and returns it at once; it serves until
--- `srv:close()`. May be called from the main chunk.
---
--- `handler(req)` runs in a worker task for each request (it may wait as
--- long as it needs: the other connections go on) and
--- returns `status, headers, body` (`headers` maps names to a string, a
--- number or an array of strings; `body` a string or nil; Content-Length,
--- Date and Connection are set by the server), or answers itself with
--- `req:stream`, `req:sse` or `req:websocket`. An error raised in the
--- handler (a bad status, a header value with CR or LF included) answers
--- 500 and is reported to `opts.on_error(err, traceback, req)`, or else
--- like an error that ends a task (to `lunet.on_error`'s handler, printed by
--- default); the server goes on.
---
--- With `opts.tls` (`lunet.socket`'s server TLS options: `cert_file`,
--- `key_file`, `alpn`, `client_ca_file`) it serves https: each connection's
--- handshake advances while it waits in the lot (within `timeouts.idle`).
---
--- Returns `nil, err` when the listen fails (`"failed to bind: address
--- already in use"`, a certificate that cannot be loaded, ...). Raises for
--- options that are not valid.
---@param opts lunet.http.Options where to listen, limits, timeouts
---@param handler async fun(req: lunet.http.Request): integer?, table?, string? the request handler (runs in the connection's task, so it may wait)
---@return lunet.http.Server|nil srv the running server, or nil on failure
---@return string|nil err why it could not listen
function http.serve(opts, handler) end

--- The options of `http.serve`.
---@class lunet.http.Options
---@field host? string the address to listen on (default "127.0.0.1")
---@field port integer the port; 0 picks a free one (see `srv:address()`)
---@field backlog? integer the listen backlog (default 511)
---@field limits? lunet.http.Limits size limits
---@field timeouts? lunet.http.Timeouts time limits in ms (false: none)
---@field on_error? fun(err: any, traceback: string, req: lunet.http.Request) called for a handler error
---@field tls? lunet.socket.TlsOptions serve https with these TLS options (`cert_file`, `key_file` required)

--- Size limits of `http.serve`.
---@class lunet.http.Limits
---@field max_line? integer the request line with its CRLF, in bytes (default 8192; 414)
---@field max_head? integer request line and header fields, in bytes (default 16384; 431)
---@field max_headers? integer header fields (default 100; 431)
---@field max_body? integer a request body, streamed or not, in bytes (default 1 MiB, at most 2^53; 413; `req:body()` holds at most 2^31 - 1)
---@field max_ws_payload? integer a WebSocket message, in bytes (default 1 MiB; close 1009)

--- Time limits of `http.serve`, in milliseconds; `false` removes one.
---@class lunet.http.Timeouts
---@field header? number from a request's first byte to the end of its head (default 10000; 408)
---@field idle? number waiting for the next request on a kept-alive connection (default 60000; closes)
---@field body? number each wait while reading a request body (default 60000; 408)
---@field send? number each wait while the client takes no more of a response (default 60000)

--- A running server, made by `http.serve`.
---@class lunet.http.Server
local server = {}

--- The address the server listens on. Does not yield.
---@return string host the IP address
---@return integer port the port
function server:address() end

--- The number of open connections. Does not yield.
---@return integer n open connections
function server:connections() end

--- Stops accepting connections and closes the idle ones; requests in flight
--- finish (their answers carry `Connection: close`), then their connections
--- close. Handlers still running `grace_ms` later (long streams, Server-Sent
--- Events, WebSockets) are ended: their connection is closed and their task
--- cancelled. Does not yield; calling it again does nothing. Raises for a
--- `grace_ms` that is not a number >= 0.
---@param grace_ms? number how long running handlers may go on (default 5000; 0: end them now)
function server:close(grace_ms) end

--- A request, given to the handler. `req.method`, `req.target` (as sent),
--- `req.path`, `req.query` (the raw text after `?`, `""` if none),
--- `req.version` (`"1.1"` or `"1.0"`), `req.headers` (lower-case names;
--- repeated fields joined with `", "`, cookies with `"; "`).
---@class lunet.http.Request
---@field method string the request method, such as "GET"
---@field target string the request target as sent
---@field path string the target before `?`
---@field query string the raw text after `?` ("" if none)
---@field version string "1.1" or "1.0"
---@field headers table<string, string> header fields by lower-case name
local req = {}

--- Reads the whole request body (at most `limits.max_body` bytes; chunked
--- bodies are decoded), saying `100 Continue` first if the client asked.
--- Later calls return the same string. On failure returns `nil, err`
--- (`"body too large"`, `"malformed chunked body"`, `"timeout"`, `"closed"`)
--- and the server answers 413, 400 or 408 whatever the handler returns.
---@async
---@return string|nil body the body ("" when the request has none)
---@return string|nil err why it could not be read
function req:body() end

--- A reader of the request body piece by piece, for bodies too large to
--- hold (the name of lua-resty-http's body readers). `opts.max` lowers
--- `limits.max_body` for this request (it cannot raise it: a Content-Length
--- over `limits.max_body` is answered 413 before the handler runs). Calling
--- it again returns the same reader. After `req:body()`, the reader gives
--- that body as one piece; after `body_reader`, `req:body()` raises.
--- Raises for `opts` that is not a table or a `max` that is not a number >= 0.
---@param opts? table `{max = bytes}`
---@return lunet.http.BodyReader reader the reader
function req:body_reader(opts) end

--- Starts a streamed response: sends the head now, then the body piece by
--- piece with the writer (chunked on HTTP/1.1; on HTTP/1.0 until the
--- connection closes). The server ends the body when the handler returns.
--- Raises if a response was already sent or `status` is not valid.
---@async
---@param status integer the status code (200 or more)
---@param headers? table header fields
---@return lunet.http.Writer w the body writer
function req:stream(status, headers) end

--- Starts a Server-Sent Events stream (`text/event-stream`, `no-cache`,
--- plus `headers`). Raises if a response was already sent.
---@async
---@param headers? table more header fields
---@return lunet.http.Sse sse the event writer
function req:sse(headers) end

--- Completes a WebSocket handshake (RFC 6455, version 13). On failure
--- returns `nil, err` and the server answers 400 or 426 whatever the
--- handler returns. `opts.protocol` is sent as `Sec-WebSocket-Protocol`.
--- When the handler returns, an open WebSocket is closed with 1000.
---@async
---@param opts? table `protocol`: the subprotocol to accept
---@return lunet.http.WebSocket|nil ws the connection, or nil on failure
---@return string|nil err why the handshake failed
function req:websocket(opts) end

--- A request body read piece by piece (`req:body_reader`).
---@class lunet.http.BodyReader
local reader = {}

--- The next piece of the body: what has arrived of a Content-Length body
--- (at most the socket's read size), or a chunk of a chunked one (at most
--- 64 KiB), saying `100 Continue` first if the client asked; `nil` at the
--- end of the body (and on every later call); or `nil, err`
--- (`"body too large"`, `"malformed chunked body"`, `"timeout"`, `"closed"`):
--- then the server answers 413, 400 or 408 whatever the handler returns
--- (unless the response has started) and closes the connection. Each wait
--- is bounded by `timeouts.body`. Raises when called after the handler
--- returned.
---@async
---@return string|nil piece the next piece, or nil at the end or on failure
---@return string|nil err why the body could not be read
function reader:read() end

--- The body writer of a streamed response.
---@class lunet.http.Writer
local writer = {}

--- Sends the next piece of the body (nothing for `""`). Returns `true`, or
--- `nil, err` (`"closed"` after `close`, or the socket's error such as
--- `"broken pipe"`). Raises unless `s` is a string or number.
---@async
---@param s string the bytes to send
---@return true|nil ok true on success
---@return string|nil err why it failed
function writer:write(s) end

--- Ends the body. Returns `true`, or `nil, err`; a second call does nothing.
---@async
---@return true|nil ok true on success
---@return string|nil err why it failed
function writer:close() end

--- A Server-Sent Events stream (also has `close`).
---@class lunet.http.Sse: lunet.http.Writer
local sse = {}

--- Sends one event: `event`, `id` (one line each), `retry` (ms) and `data`
--- (several lines become several `data:` lines). Returns `true` or
--- `nil, err` (the client has gone: `"broken pipe"`, ...). Raises for a
--- field with a line break where one line is needed, or an empty event.
---@async
---@param ev table `{event =, data =, id =, retry =}`
---@return true|nil ok true on success
---@return string|nil err why it failed
function sse:send(ev) end

--- Sends a comment line (`: text`), which clients ignore: keeps idle
--- connections through proxies open.
---@async
---@param text? string one line
---@return true|nil ok true on success
---@return string|nil err why it failed
function sse:comment(text) end

--- A WebSocket connection (RFC 6455), made by `req:websocket`.
---
--- Client frames must be masked (else close 1002); messages may be
--- fragmented, up to `limits.max_ws_payload` bytes (else close 1009);
--- text must be UTF-8 (else close 1007); reserved bits, unknown opcodes and
--- bad control frames close with 1002.
---@class lunet.http.WebSocket
local ws = {}

--- Waits for the next message. Pings are answered and pongs dropped on the
--- way. Returns `data, "text"|"binary"`; when the peer closes,
--- `nil, "closed", code, reason` (after answering its close frame); on a
--- protocol error `nil, err` (after closing with the matching code); or the
--- socket's error.
---@async
---@return string|nil data the message
---@return string|nil kind "text" or "binary"; or the error
---@return integer|nil code the peer's close code
---@return string|nil reason the peer's close reason
function ws:recv() end

--- Sends a message, text unless `kind` is `"binary"`. Returns `true` or
--- `nil, err` (`"closed"` after a close frame was sent).
---@async
---@param data string the message
---@param kind? "text"|"binary" the message type (default "text")
---@return true|nil ok true on success
---@return string|nil err why it failed
function ws:send(data, kind) end

--- Sends a ping (at most 125 bytes).
---@async
---@param data? string the ping payload
---@return true|nil ok true on success
---@return string|nil err why it failed
function ws:ping(data) end

--- Sends a close frame (`code` 1000 to 4999, default 1000; `reason` at most
--- 123 bytes), waits up to 2 s for the peer's, and closes the connection.
---@async
---@param code? integer the close code
---@param reason? string the close reason
---@return true ok always true
function ws:close(code, reason) end

return http
