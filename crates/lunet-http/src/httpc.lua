-- lunet.httpc: an HTTP/1.1 client on lunet.socket, with a bounded pool of
-- kept-alive connections per scheme, host and port. Called with the shared
-- wire table (native parsing + helpers); returns the module.
return function(W, guard)
local lunet = require("lunet")
local socket = require("lunet.socket")

local read, write, sclose, unread, connect = socket.read, socket.write, socket.close, socket.unread, socket.connect
local parse_response, read_chunked, check_field, chunk = W.parse_response, W.read_chunked, W.check_field, W.chunk
local type, pairs, ipairs, tostring, error, tonumber, select = type, pairs, ipairs, tostring, error, tonumber, select
local concat, format, floor = table.concat, string.format, math.floor
local now = lunet.now

local M = {}

local config = { max_idle_per_host = 8, max_idle = 64, idle_timeout_ms = 30000 }

-- key ("scheme://host:port") -> array of { conn =, since = ms }
local pool, pooled = {}, 0

local function take(key)
  local list = pool[key]
  if not list then return nil end
  local t = now()
  while #list > 0 do
    local e = list[#list]
    list[#list] = nil
    pooled = pooled - 1
    if t - e.since <= config.idle_timeout_ms then return e.conn end
    sclose(e.conn)
  end
  return nil
end

local function give(key, conn)
  local list = pool[key]
  if not list then
    list = {}
    pool[key] = list
  end
  if #list >= config.max_idle_per_host or pooled >= config.max_idle then
    sclose(conn)
    return
  end
  list[#list + 1] = { conn = conn, since = now() }
  pooled = pooled + 1
end

--- httpc.configure{max_idle_per_host =, max_idle =, idle_timeout_ms =}:
-- the pool's bounds (defaults 8, 64, 30000).
function M.configure(t)
  if type(t) ~= "table" then error("httpc.configure expects a table", 2) end
  for k, v in pairs(t) do
    if config[k] == nil then error("httpc.configure: unknown field " .. tostring(k), 2) end
    if type(v) ~= "number" or v < 0 or v ~= floor(v) then
      error("httpc.configure: " .. k .. " must be an integer >= 0", 2)
    end
    config[k] = v
  end
end

--- httpc.pool_size() -> the number of idle pooled connections.
function M.pool_size()
  return pooled
end

--- httpc.close_idle(): closes every pooled connection.
function M.close_idle()
  for key, list in pairs(pool) do
    for _, e in ipairs(list) do sclose(e.conn) end
    pool[key] = nil
  end
  pooled = 0
end

local DEFAULT_PORT = { http = 80, https = 443 }

--- Splits an absolute http(s) URL: scheme, host, port, target, authority.
local function parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  scheme = scheme:lower()
  if not DEFAULT_PORT[scheme] then return nil end
  local authority, target = rest:match("^([^/?#]*)(.*)$")
  target = target:gsub("#.*$", "")
  if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
  if authority:find("@", 1, true) then return nil end
  local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil end
  port = port ~= "" and tonumber(port) or DEFAULT_PORT[scheme]
  if port < 1 or port > 65535 then return nil end
  if target:find("[%s%z]") then return nil end
  return { scheme = scheme, host = host, port = port, target = target, authority = authority }
end

local function resolve(base, loc)
  if loc:match("^%a[%w+.-]*://") then return loc end
  if loc:sub(1, 2) == "//" then return base.scheme .. ":" .. loc end
  local origin = base.scheme .. "://" .. base.authority
  if loc:sub(1, 1) == "/" then return origin .. loc end
  local dir = base.target:gsub("[?#].*$", ""):match("^(.*/)") or "/"
  return origin .. dir .. loc
end

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true, TRACE = true }

-- Reads a response head: head fields | nil, err, got_any_bytes
local function read_head(conn, method, max_header_bytes, max_header_lines)
  local data, err = read(conn)
  if not data then return nil, err or "closed", false end
  while true do
    local hl, status, headers, kind, len, close = parse_response(data, method, max_header_lines, max_header_bytes)
    if hl then
      if hl < #data then unread(conn, data:sub(hl + 1)) end
      if status >= 200 or status == 101 then
        return { status = status, headers = headers, kind = kind, len = len, close = close }
      end
      -- 1xx interim responses (100 Continue, 103 Early Hints): skip them.
      data, err = read(conn)
      if not data then return nil, err or "closed", true end
    elseif hl == nil then
      return nil, status, true
    else
      local more, rerr = read(conn)
      if not more then return nil, rerr or "closed", true end
      data = data .. more
    end
  end
end

local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

local function header_value(headers, name)
  for _, f in ipairs(headers) do
    if f.name:lower() == name then return f.value end
  end
end

-- Whether a redirect drops the request body (and turns POST into GET).
local function drops_body(status, method)
  return status == 303 or ((status == 301 or status == 302) and method == "POST")
end

-- Whether the response `status, headers` is a redirect that is followed.
local function follows(o, status, headers)
  if not (o.follow_redirects and REDIRECT[status] and header_value(headers, "location")) then return false end
  -- A streamed body cannot be sent again.
  return type(o.body) ~= "function" or drops_body(status, o.method)
end

-- Sends the pieces `source()` gives: as a chunked body, or as they are
-- when the caller gave the body's `length` (Content-Length). true | nil,
-- err, from_source (the source's own nil, err ends the request, and so
-- does a source that gives more or fewer bytes than `length`; its error is
-- raised again once the connection is closed).
local function upload(conn, source, length)
  local sent = 0
  while true do
    local ok, piece, err = pcall(source)
    if not ok then
      sclose(conn)
      error(piece, 0)
    end
    if piece == nil then
      if err ~= nil then return nil, tostring(err), true end
      break
    end
    if type(piece) ~= "string" then
      sclose(conn)
      error("httpc.request: the body function must return a string or nil (got " .. type(piece) .. ")", 0)
    end
    if piece ~= "" then
      sent = sent + #piece
      if length and sent > length then
        return nil, ("the body function gave more than Content-Length (%d bytes)"):format(length), true
      end
      local werr = write(conn, length and piece or chunk(piece))
      if werr then return nil, werr end
    end
  end
  if length then
    if sent < length then
      return nil, ("the body function gave %d of Content-Length's %d bytes"):format(sent, length), true
    end
    return true
  end
  local werr = write(conn, "0\r\n\r\n")
  if werr then return nil, werr end
  return true
end

-- Hands the body to `sink(piece)` as it arrives (no size limit: the sink
-- decides); "" | nil, err (the sink's falsy answer stops the transfer).
local function stream_body(conn, h, sink)
  local function feed(piece)
    local ok, err = sink(piece)
    if not ok then return nil, err or "aborted by sink" end
    return true
  end
  if h.kind == "length" then
    local left = h.len
    while left > 0 do
      local piece, err = read(conn, left < 65536 and left or 65536)
      if not piece then return nil, err end
      local ok, serr = feed(piece)
      if not ok then return nil, serr end
      left = left - #piece
    end
  elseif h.kind == "chunked" then
    local done, err = read_chunked(conn, math.huge, feed)
    if not done then return nil, err end
  elseif h.kind == "close" then
    while true do
      local piece, err = read(conn)
      if not piece then
        if err then return nil, err end
        break
      end
      local ok, serr = feed(piece)
      if not ok then return nil, serr end
    end
  end
  return ""
end

local function exchange(u, req, o, fresh_only)
  local key = u.scheme .. "://" .. u.host .. ":" .. u.port
  local conn, reused = nil, false
  if not fresh_only and not o.tls then
    conn = take(key)
    reused = conn ~= nil
  end
  if not conn then
    local copts = { timeout = o.connect_timeout_ms }
    if u.scheme == "https" then
      copts.tls = o.tls or true -- verified against the system's CAs, for u.host
    end
    local err
    conn, err = connect(u.host, u.port, copts)
    if not conn then return nil, err end
  end
  local err = write(conn, req)
  if err then
    sclose(conn)
    if reused then return nil, err, "retry" end
    return nil, err
  end
  local uerr
  if type(o.body) == "function" then
    local ok, e, from_source = upload(conn, o.body, o.upload_length)
    if not ok then
      if from_source then
        sclose(conn)
        return nil, e
      end
      -- The server may have answered early (413, 401, ...) and stopped
      -- reading: its answer is still worth reading.
      uerr, o.close = e, true
    end
  end
  local h, herr, got = read_head(conn, o.method, o.max_header_bytes, o.max_header_lines)
  if not h then
    sclose(conn)
    if uerr then return nil, uerr end
    if reused and not got and IDEMPOTENT[o.method] then return nil, herr, "retry" end
    return nil, herr
  end
  local body, berr
  local sink = o.sink
  if sink and follows(o, h.status, h.headers) then
    sink = nil -- a redirect's own body is not the caller's
  end
  if sink then
    body, berr = stream_body(conn, h, sink)
  elseif h.kind == "none" then
    body = ""
  elseif h.kind == "length" then
    if h.len > o.max_body_bytes then
      body, berr = nil, "body too large"
    else
      body, berr = read(conn, h.len)
    end
  elseif h.kind == "chunked" then
    body, berr = read_chunked(conn, o.max_body_bytes)
  else
    body, berr = read(conn, "*a", { max = o.max_body_bytes })
    if berr == "too long" then berr = "body too large" end
  end
  if not body then
    sclose(conn)
    return nil, berr
  end
  -- A connection made with custom TLS options is not shared with others.
  if h.close or o.close or o.tls then sclose(conn) else give(key, conn) end
  return { status = h.status, body = body, headers = h.headers }
end

local function build_request(u, o, method, body)
  local h = { method, " ", u.target, " HTTP/1.1\r\n" }
  local n = 4
  local seen = {}
  for _, f in ipairs(o.headers) do
    local lname = f[1]:lower()
    if lname ~= "content-length" and lname ~= "transfer-encoding" and not (o.cross and o.strip[lname]) then
      seen[lname] = true
      h[n + 1], h[n + 2], h[n + 3], h[n + 4] = f[1], ": ", f[2], "\r\n"
      n = n + 4
      if lname == "connection" and tostring(f[2]):lower():find("close", 1, true) then o.close = true end
    end
  end
  if not seen.host then
    h[n + 1], h[n + 2], h[n + 3] = "Host: ", u.authority, "\r\n"
    n = n + 3
  end
  if not seen["user-agent"] then
    h[n + 1] = "User-Agent: lunet-httpc\r\n"
    n = n + 1
  end
  if type(body) == "function" and o.upload_length then
    h[n + 1], h[n + 2], h[n + 3] = "Content-Length: ", o.upload_length, "\r\n"
    n = n + 3
  elseif type(body) == "function" then
    h[n + 1] = "Transfer-Encoding: chunked\r\n"
    n = n + 1
  elseif body or method == "POST" or method == "PUT" or method == "PATCH" then
    h[n + 1], h[n + 2], h[n + 3] = "Content-Length: ", body and #body or 0, "\r\n"
    n = n + 3
  end
  h[n + 1] = "\r\n"
  if type(body) == "string" and body ~= "" then return { concat(h), body } end
  return concat(h)
end

local STRIP_ON_CROSS = { authorization = true, cookie = true, ["proxy-authorization"] = true }

local function run(o)
  local url, method, body = o.url, o.method, o.body
  local redirects = 0
  local u = parse_url(url)
  if not u then return nil, "invalid url" end
  local first_origin = u.scheme .. "://" .. u.host .. ":" .. u.port
  while true do
    o.cross = (u.scheme .. "://" .. u.host .. ":" .. u.port) ~= first_origin
    o.close, o.method, o.body = false, method, body
    local req = build_request(u, o, method, body)
    -- A streamed body goes on a new connection: it cannot be sent again
    -- if a pooled one turns out closed.
    local res, err, retry = exchange(u, req, o, type(body) == "function")
    if not res and retry then res, err = exchange(u, req, o, true) end
    if not res then return nil, err end
    res.effective_url = url
    local st = res.status
    if not follows(o, st, res.headers) then
      return res
    end
    local loc = header_value(res.headers, "location")
    redirects = redirects + 1
    if redirects > o.max_redirects then return nil, "too many redirects" end
    url = resolve(u, loc)
    u = parse_url(url)
    if not u then return nil, "invalid redirect location" end
    if drops_body(st, method) then
      if method ~= "HEAD" then method = "GET" end
      body = nil
    end
  end
end

local function opt_int(o, k, default, min)
  local v = o[k]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= floor(v) or v < min then
    error(format("httpc.request: %s must be an integer >= %d (got %s)", k, min, tostring(v)), 3)
  end
  return v
end

--- httpc.request{url, method, headers, body, timeout_ms, connect_timeout_ms,
-- max_body_bytes, max_header_bytes, max_header_lines, follow_redirects,
-- max_redirects, sink} -> {status, body, headers = {{name=, value=}, ...},
-- effective_url} | nil, err
function M.request(opts)
  if type(opts) ~= "table" then error("httpc.request expects an options table (got " .. type(opts) .. ")", 2) end
  if type(opts.url) ~= "string" then error("httpc.request: url must be a string", 2) end
  local method = opts.method or "GET"
  if type(method) ~= "string" or not method:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
    error("httpc.request: method must be a token such as \"GET\"", 2)
  end
  if opts.body ~= nil and type(opts.body) ~= "string" and type(opts.body) ~= "function" then
    error("httpc.request: body must be a string or a function (got " .. type(opts.body) .. ")", 2)
  end
  local hs, upload_length = {}, nil
  if opts.headers ~= nil then
    if type(opts.headers) ~= "table" then error("httpc.request: headers must be a table", 2) end
    for k, v in pairs(opts.headers) do
      local name, value = k, v
      if type(k) == "number" then
        if type(v) ~= "table" then error("httpc.request: headers array entries must be {name, value}", 2) end
        name, value = v[1], v[2]
      end
      check_field(name, value)
      hs[#hs + 1] = { name, value }
      -- A body function with a Content-Length of the caller's is sent as
      -- is, that many bytes (lua-resty-http does the same); without, chunked.
      if type(opts.body) == "function" and type(name) == "string" and name:lower() == "content-length" then
        local n = tonumber(value)
        if not n or n < 0 or n ~= math.floor(n) or n > 2 ^ 53 or not tostring(value):match("^%s*%d+%s*$") then
          error("httpc.request: Content-Length must be a whole number of bytes (got " .. tostring(value) .. ")", 2)
        end
        upload_length = n
      end
    end
  end
  local timeout = opt_int(opts, "timeout_ms", 30000, 1)
  local o = {
    url = opts.url, method = method, body = opts.body, headers = hs, tls = opts.tls,
    connect_timeout_ms = opt_int(opts, "connect_timeout_ms", timeout, 1),
    max_body_bytes = opt_int(opts, "max_body_bytes", 10485760, 0),
    max_header_bytes = opt_int(opts, "max_header_bytes", 65536, 64),
    max_header_lines = opt_int(opts, "max_header_lines", 256, 1),
    max_redirects = opt_int(opts, "max_redirects", 8, 0),
    follow_redirects = opts.follow_redirects == true,
    sink = opts.sink,
    strip = STRIP_ON_CROSS,
    upload_length = upload_length,
  }
  if opts.tls ~= nil and type(opts.tls) ~= "table" then
    error("httpc.request: tls must be a table of TLS options", 2)
  end
  if opts.sink ~= nil and type(opts.sink) ~= "function" then
    error("httpc.request: sink must be a function", 2)
  end
  if o.max_body_bytes > 2147483647 then error("httpc.request: max_body_bytes must be at most 2^31 - 1", 2) end
  if o.connect_timeout_ms > timeout then error("httpc.request: connect_timeout_ms must be <= timeout_ms", 2) end
  return lunet.deadline(timeout, run, o)
end

M.request = guard("httpc.request", M.request)
M._parse_url = parse_url
return M
end
