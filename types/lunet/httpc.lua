---@meta lunet.httpc

--- An HTTP/1.1 client (the `lunet-http` rock), with C lunet's
--- `lunet.httpc` call and result shape. Connections are kept alive and
--- reused from a pool per scheme, host and port, bounded by
--- `httpc.configure`. https goes through `lunet.socket`'s TLS, verified
--- against the system's CAs for the URL's host unless `tls` says otherwise.
---@class lunet.httpc
local httpc = {}

--- Makes a request and reads the whole response.
---
--- Returns `{status, body, headers = {{name =, value =}, ...},
--- effective_url}` (header names as the server sent them, repeats kept;
--- `effective_url` is the last URL after redirects), or `nil, err`:
--- `"invalid url"`, `"timeout"` (the whole request, `timeout_ms`),
--- `"body too large"`, `"too many redirects"`, `"tls: <reason>"` (a
--- certificate that does not verify, ...), a malformed response, or the socket's error (`"connection refused"`,
--- `"closed"`). A request on a pooled connection the server had closed is
--- retried once on a new one when its method is idempotent.
---
--- Unlike C lunet's (libcurl's), redirects are followed only with
--- `follow_redirects = true`; then 303 (and 301/302 after a POST) become a
--- GET without body, and Authorization and Cookie are not sent to another
--- host. Raises for options that are not valid.
---@async
---@param opts lunet.httpc.Options the request
---@return lunet.httpc.Response|nil res the response, or nil on failure
---@return string|nil err why it failed
function httpc.request(opts) end

--- Sets the pool's bounds: `max_idle_per_host` (default 8), `max_idle`
--- (default 64) idle connections kept, each for at most `idle_timeout_ms`
--- (default 30000). Raises for an unknown field or a value that is not an
--- integer >= 0.
---@param t table the bounds to change
function httpc.configure(t) end

--- The number of idle connections in the pool.
---@return integer n idle pooled connections
function httpc.pool_size() end

--- Closes every idle pooled connection.
function httpc.close_idle() end

--- The options of `httpc.request`.
---@class lunet.httpc.Options
---@field url string an absolute http:// or https:// URL
---@field method? string the method (default "GET")
---@field headers? table `{["Name"] = "value"}` or `{{"Name", "value"}, ...}`
---@field body? string|fun(): string?, string? the request body: a string (sent with Content-Length), or a function giving the next piece, nil at the end or nil, err to abort (sent chunked, or as is with the Content-Length given in `headers`, which it must match; on a new connection; a 307/308 is then not followed)
---@field timeout_ms? integer the limit of the whole request, redirects included (default 30000)
---@field connect_timeout_ms? integer the limit of each connect (default timeout_ms)
---@field max_body_bytes? integer the largest response body accepted (default 10 MiB)
---@field max_header_bytes? integer the largest response head (default 64 KiB)
---@field max_header_lines? integer the most response header fields (default 256)
---@field follow_redirects? boolean follow 301, 302, 303, 307, 308 (default false)
---@field max_redirects? integer the most redirects followed (default 8)
---@field sink? fun(piece: string): boolean?, string? receives the response body piece by piece as it arrives (then `body` is "" and `max_body_bytes` does not apply); a falsy answer stops the transfer (`nil, err`, or "aborted by sink")
---@field tls? lunet.socket.TlsOptions TLS options for https (`ca_file`, `verify`, `server_name`, client certificates); connections made with them are not pooled

--- The result of `httpc.request`.
---@class lunet.httpc.Response
---@field status integer the status code
---@field body string the response body
---@field headers table[] `{name =, value =}` in the order received
---@field effective_url string the URL that answered

return httpc
