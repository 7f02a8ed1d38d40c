-- lunet.http: an HTTP/1.1 server. Idle connections wait in a parking lot, requests run in worker tasks: keep-alive,
-- pipelining, chunked bodies, Expect: 100-continue, limits, timeouts,
-- streaming responses, Server-Sent Events and WebSocket. Called with the
-- shared wire table (native parsing + helpers); returns the module.
return function(W, guard)
local lunet = require("lunet")
local socket = require("lunet.socket")
local bit = require("bit")

local read, write, unread, sclose = socket.read, socket.write, socket.unread, socket.close
local settimeouts, accept, listen = socket.settimeouts, socket.accept, socket.listen
local park, parking = socket.park, socket.parking
-- The lot's own next (lot:next() loops over it: nothing returned means
-- "woken to look again").
local lot_next = debug.getregistry()["lunet.socket.parking"].__index._next
local parse_request, read_chunked, chunk, check_field = W.parse_request, W.read_chunked, W.chunk, W.check_field
local chunked_piece = W.chunked_piece
local REASONS = W.REASONS
local spawn, now, sleep, current = lunet.spawn, lunet.now, lunet.sleep, lunet.current
local type, pairs, ipairs, tostring, error, xpcall, pcall, setmetatable, select, next =
  type, pairs, ipairs, tostring, error, xpcall, pcall, setmetatable, select, next
local format, concat, byte, char, floor = string.format, table.concat, string.byte, string.char, math.floor
local band, bor, rshift = bit.band, bit.bor, bit.rshift
local traceback = debug.traceback

local M = {}

local DEFAULT_LIMITS = {
  max_line = 8192,        -- request line, CRLF included (414)
  max_head = 16384,       -- request line + header fields (431)
  max_headers = 100,      -- header fields (431)
  max_body = 1048576,     -- request body (413)
  max_ws_payload = 1048576, -- WebSocket message (close 1009)
}
local DEFAULT_TIMEOUTS = {
  header = 10000, -- from the first byte of a request to the end of its head (408)
  idle = 60000,   -- waiting for the next request on a kept-alive connection
  body = 60000,   -- each wait while reading a request body (408)
  send = 60000,   -- each wait while the kernel takes no more of a response
}
-- Unread request bodies up to this size are skipped to keep the connection.
local DRAIN_MAX = 65536

---------------------------------------------------------------------------
-- Responses
---------------------------------------------------------------------------

local date_t, date_s = -1, nil
local function http_date()
  local t = os.time()
  if t ~= date_t then
    date_t, date_s = t, os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
  end
  return date_s
end

local status_lines = setmetatable({}, { __index = function(t, code)
  local line = format("HTTP/1.1 %d %s\r\n", code, REASONS[code] or "Unknown")
  t[code] = line
  return line
end })

local function check_status(status)
  if type(status) ~= "number" or status ~= floor(status) or status < 100 or status > 999 then
    error("handler must return a status code from 100 to 999 (got " .. tostring(status) .. ")", 3)
  end
end

-- Appends the user's header fields to the head `h` (n entries so far).
-- Returns the new count, and whether the user asked to close.
local function add_headers(h, n, headers)
  if headers == nil then return n, false end
  if type(headers) ~= "table" then
    error("headers must be a table (got " .. type(headers) .. ")", 3)
  end
  local close = false
  for name, value in pairs(headers) do
    local l = type(name) == "string" and #name or 0
    local lname = (l == 10 or l == 14 or l == 17) and name:lower() or nil
    if lname == "content-length" or lname == "transfer-encoding" then
      -- lunet.http frames the body itself.
    elseif type(value) == "table" then
      for _, v in ipairs(value) do
        check_field(name, v)
        h[n + 1], h[n + 2], h[n + 3], h[n + 4] = name, ": ", v, "\r\n"
        n = n + 4
      end
    else
      check_field(name, value)
      if lname == "connection" then
        close = close or value:lower():find("close", 1, true) ~= nil
      else
        h[n + 1], h[n + 2], h[n + 3], h[n + 4] = name, ": ", value, "\r\n"
        n = n + 4
      end
    end
  end
  return n, close
end

-- The head of a response as one string. `length` is the Content-Length
-- (nil: none; "chunked": chunked coding); a small `body` is appended (one
-- string, one plain write).
-- (One scratch array for every head: building one never yields, and
-- concat takes only its first n entries, so stale ones past n are harmless.)
local scratch = {}
local function build_head(req, status, headers, length, body)
  local h = scratch
  h[1], h[2], h[3], h[4] = status_lines[status], "Date: ", http_date(), "\r\n"
  local n, close = add_headers(h, 4, headers)
  if close then req._close = true end
  if length == "chunked" then
    h[n + 1] = "Transfer-Encoding: chunked\r\n"
    n = n + 1
  elseif length then
    h[n + 1], h[n + 2], h[n + 3] = "Content-Length: ", length, "\r\n"
    n = n + 3
  end
  -- A body the handler left unread that cannot be skipped: close after.
  if not req._body and ((req._expect and not req._continued) or (req._len or 0) > DRAIN_MAX) then
    req._close = true
  end
  if req._close or req._srv.closing then
    req._close = true
    h[n + 1] = "Connection: close\r\n"
    n = n + 1
  elseif req.version == "1.0" then
    h[n + 1] = "Connection: keep-alive\r\n"
    n = n + 1
  end
  h[n + 1] = "\r\n"
  if body then
    h[n + 2] = body
    n = n + 2
  else
    n = n + 1
  end
  local head = concat(h, "", 1, n)
  if n > 64 then scratch = {} end -- a huge head: do not keep its strings
  return head
end

local function no_body(req, status)
  return req.method == "HEAD" or status < 200 or status == 204 or status == 304
end

-- Sends the handler's answer. Returns false if the connection broke.
local function respond(req, status, headers, body)
  check_status(status)
  if status < 200 then
    error("handler must not return an informational (1xx) status", 2)
  end
  if body ~= nil and type(body) ~= "string" then
    if type(body) == "number" then
      body = tostring(body)
    else
      error("response body must be a string or nil (got " .. type(body) .. ")", 2)
    end
  end
  body = body or ""
  local bodyless = status == 204 or status == 304
  local send_body = not bodyless and req.method ~= "HEAD" and body ~= ""
  local small = send_body and #body <= 16384
  local head = build_head(req, status, headers, not bodyless and #body or nil, small and body or nil)
  req._responded = true
  local err
  if send_body and not small then
    err = write(req._conn, { head, body }) -- a large body is not copied
  else
    err = write(req._conn, head)
  end
  if err then req._close = true end
  return err == nil
end

-- A short error response (the server's own: limits, malformed requests).
local function send_error(conn, status, srv)
  local text = (REASONS[status] or "Error") .. "\n"
  write(conn, {
    status_lines[status], "Date: ", http_date(), "\r\nContent-Type: text/plain\r\nContent-Length: ",
    #text, "\r\nConnection: close\r\n\r\n", text,
  })
end

---------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------

local Req = {}
local REQ_MT = { __index = Req }

-- A request's objects are used after its handler returned (the connection
-- serves the next request meanwhile, or is closed).
local FINISHED = "the request is finished (its handler returned)"

local BODY_STATUS = { ["body too large"] = 413, ["malformed chunked body"] = 400, timeout = 408 }

-- The connection's read timeout, set only when it changes (it is the
-- header timeout between requests).
local function set_read_timeout(req, ms)
  if req._read_ms ~= ms then
    req._read_ms = ms
    settimeouts(req._conn, nil, req._srv.timeouts.send, ms)
  end
end

local function send_continue(req)
  if req._expect and not req._continued and not req._responded then
    req._continued = true
    local err = write(req._conn, "HTTP/1.1 100 Continue\r\n\r\n")
    if err then return nil, err end
  end
  return true
end

-- A body the server cannot hold in one string (socket.read's bound).
local MAX_STRING = 2147483647

-- Records a failed body read: the server answers with the matching status
-- (unless the response has started) and closes the connection.
local function body_failed(req, err)
  req._berr, req._fail, req._close = err, BODY_STATUS[err] or 0, true
  return nil, err
end

--- req:body() -> the whole request body | nil, err. On failure the server
-- answers with the matching status (413, 400, 408) whatever the handler
-- returns, and closes the connection.
function Req:body()
  if self._done then error("req:body: " .. FINISHED, 2) end
  if self._body then return self._body end
  if self._berr then return nil, self._berr end
  if self._reader then
    error("req:body: the body is being streamed (req:body_reader was called)", 2)
  end
  local len = self._len
  if not len and not self._chunked then
    self._body = ""
    return ""
  end
  local max = self._srv.limits.max_body
  if max > MAX_STRING then max = MAX_STRING end
  if len and len > max then return body_failed(self, "body too large") end
  local ok, err = send_continue(self)
  if not ok then return body_failed(self, err) end
  set_read_timeout(self, self._srv.timeouts.body)
  local data
  if len then
    data, err = read(self._conn, len)
  else
    data, err = read_chunked(self._conn, max)
  end
  if not data then return body_failed(self, err) end
  self._body = data
  return data
end

-- A request body read piece by piece.
local Reader = {}
local READER_MT = { __index = Reader }

-- The most a chunked body's piece holds (a Content-Length body's pieces
-- are what has arrived: at most the socket's read size).
local PIECE = 65536

--- req:body_reader([opts]) -> reader: reads the body piece by piece
-- (opts.max: a limit for this request below limits.max_body).
function Req:body_reader(opts)
  local max = self._srv.limits.max_body
  if opts ~= nil then
    if type(opts) ~= "table" then error("req:body_reader: opts must be a table (got " .. type(opts) .. ")", 2) end
    local m = opts.max
    if m ~= nil then
      if type(m) ~= "number" or m ~= m or m < 0 then
        error("req:body_reader: max must be a number >= 0 (got " .. tostring(m) .. ")", 2)
      end
      if m < max then max = m end
    end
  end
  local r = self._reader
  if r then
    if max < r.max then r.max = max end
    return r
  end
  r = setmetatable({ req = self, max = max, got = 0, st = { left = 0, total = 0 } }, READER_MT)
  -- A body already read whole comes out as one piece.
  if self._body then r.held = self._body ~= "" and self._body or nil end
  self._reader = r
  return r
end

--- reader:read() -> the next piece of the body | nil at its end | nil, err.
function Reader:read()
  local req = self.req
  if req._done then error("reader:read: " .. FINISHED, 2) end
  if self.done then return nil end
  if req._berr then return nil, req._berr end
  if req._body then
    local held = self.held
    self.held, self.done = nil, true
    return held
  end
  local left = req._len
  if not left and not req._chunked then
    self.done = true
    return nil
  end
  local conn = req._conn
  if left and self.got + left > self.max then return body_failed(req, "body too large") end
  local ok, err = send_continue(req)
  if not ok then return body_failed(req, err) end
  set_read_timeout(req, req._srv.timeouts.body)
  local data
  if left then
    data, err = read(conn)
    if not data then return body_failed(req, err or "closed") end
    if #data >= left then
      -- The body ends here: what follows is the next request's.
      if #data > left then
        unread(conn, data:sub(left + 1))
        data = data:sub(1, left)
      end
      req._len, self.done = nil, true
    else
      req._len = left - #data
    end
  else
    data, err = chunked_piece(conn, self.st, self.max, PIECE)
    if data == false then
      req._chunked, self.done = nil, true
      return nil
    end
    if not data then return body_failed(req, err) end
  end
  self.got = self.got + #data
  return data
end

-- Skips an unread body (or its unread rest) so the connection can serve
-- the next request; false when it cannot (too big, or the client was never
-- told to send it).
local function drain(req)
  if req._body or req._berr or (not req._len and not req._chunked) then return true end
  if req._expect and not req._continued then return false end
  if req._len and req._len > DRAIN_MAX then return false end
  set_read_timeout(req, req._srv.timeouts.body)
  if req._len then
    return read(req._conn, req._len) ~= nil
  end
  -- Chunked: from where a body reader stopped, if one was used.
  local st = req._reader and req._reader.st or { left = 0, total = 0 }
  local max = st.total + DRAIN_MAX
  while true do
    local data = chunked_piece(req._conn, st, max, DRAIN_MAX)
    if data == false then return true end
    if not data then return false end
  end
end

local function start_stream(req, status, headers, what)
  if req._done then error(what .. ": " .. FINISHED, 3) end
  if req._responded then error(what .. ": the response has already been sent", 3) end
  check_status(status)
  if status < 200 then error(what .. ": status must be 200 or more", 3) end
  local chunked = req.version == "1.1" and not no_body(req, status)
  if not chunked and not no_body(req, status) then req._close = true end
  req._responded = true
  local head = build_head(req, status, headers, chunked and "chunked" or nil)
  local err = write(req._conn, head)
  if err then req._close = true end
  return chunked, err
end

local Writer = {}
local WRITER_MT = { __index = Writer }

--- w:write(s) -> true | nil, err: sends `s` as the next piece of the body.
function Writer:write(s)
  if type(s) ~= "string" then
    if type(s) ~= "number" then error("write expects a string (got " .. type(s) .. ")", 2) end
    s = tostring(s)
  end
  if self.closed then return nil, "closed" end
  if self.err then return nil, self.err end
  if s == "" or self.bodyless then return true end
  local err = write(self.req._conn, self.chunked and chunk(s) or s)
  if err then
    self.err, self.req._close = err, true
    return nil, err
  end
  return true
end

--- w:close() -> true | nil, err: ends the body.
function Writer:close()
  if self.closed then return true end
  self.closed = true
  if self.err then return nil, self.err end
  if self.chunked then
    local err = write(self.req._conn, "0\r\n\r\n")
    if err then
      self.err, self.req._close = err, true
      return nil, err
    end
  end
  return true
end

--- req:stream(status, headers) -> writer: a response whose body is sent
-- piece by piece (chunked on HTTP/1.1; on HTTP/1.0 until the connection
-- closes).
function Req:stream(status, headers)
  local chunked, err = start_stream(self, status, headers, "stream")
  local w = setmetatable({ req = self, chunked = chunked, bodyless = no_body(self, status), err = err }, WRITER_MT)
  self._writer = w
  return w
end

-- Server-Sent Events.
local Sse = {}
local SSE_MT = { __index = Sse }

local function sse_field(name, v, out)
  if v == nil then return end
  v = tostring(v)
  if v:find("[\r\n]") then error("sse: " .. name .. " must be one line", 3) end
  out[#out + 1] = name .. ": " .. v .. "\n"
end

--- sse:send{event=, data=, id=, retry=} -> true | nil, err
function Sse:send(ev)
  if type(ev) ~= "table" then error("sse:send expects a table (got " .. type(ev) .. ")", 2) end
  local out = {}
  sse_field("event", ev.event, out)
  sse_field("id", ev.id, out)
  if ev.retry ~= nil then
    if type(ev.retry) ~= "number" or ev.retry < 0 then error("sse: retry must be a number of ms", 2) end
    out[#out + 1] = format("retry: %d\n", ev.retry)
  end
  if ev.data ~= nil then
    local data = tostring(ev.data)
    for line in (data .. "\n"):gmatch("([^\n]*)\n") do
      out[#out + 1] = "data: " .. line:gsub("\r$", "") .. "\n"
    end
  end
  if #out == 0 then error("sse:send needs at least one of event, data, id, retry", 2) end
  out[#out + 1] = "\n"
  return Writer.write(self, concat(out))
end

--- sse:comment(text) -> true | nil, err: a comment line (keeps idle proxies open).
function Sse:comment(text)
  text = tostring(text or "")
  if text:find("[\r\n]") then error("sse: a comment must be one line", 2) end
  return Writer.write(self, ": " .. text .. "\n\n")
end

--- req:sse([headers]) -> sse: starts a text/event-stream response.
function Req:sse(headers)
  local h = { ["Content-Type"] = "text/event-stream", ["Cache-Control"] = "no-cache" }
  if headers ~= nil then
    if type(headers) ~= "table" then error("sse: headers must be a table", 2) end
    for k, v in pairs(headers) do h[k] = v end
  end
  local chunked, err = start_stream(self, 200, h, "sse")
  local s = setmetatable({ req = self, chunked = chunked, bodyless = self.method == "HEAD", err = err }, SSE_MT)
  self._writer = s
  return s
end

---------------------------------------------------------------------------
-- WebSocket (RFC 6455)
---------------------------------------------------------------------------

local Ws = {}
local WS_MT = { __index = Ws }

local function has_token(v, tok)
  if not v then return false end
  for t in v:lower():gmatch("[^,%s]+") do
    if t == tok then return true end
  end
  return false
end

local function ws_header(op, len)
  if len < 126 then return char(bor(0x80, op), len) end
  if len < 65536 then return char(bor(0x80, op), 126, rshift(len, 8), band(len, 255)) end
  local hi, lo = floor(len / 4294967296), len % 4294967296
  return char(bor(0x80, op), 127, rshift(hi, 24), band(rshift(hi, 16), 255), band(rshift(hi, 8), 255),
    band(hi, 255), rshift(lo, 24), band(rshift(lo, 16), 255), band(rshift(lo, 8), 255), band(lo, 255))
end

local function ws_write(ws, op, data)
  if ws.err then return nil, ws.err end
  local err = write(ws.conn, { ws_header(op, #data), data })
  if err then
    ws.err = err
    return nil, err
  end
  return true
end

local function close_payload(code, reason)
  if not code then return "" end
  return char(rshift(code, 8), band(code, 255)) .. (reason or "")
end

-- Fails the connection: sends a close frame with `code`, closes the socket.
local function ws_fail(ws, code, err)
  if not ws.sent_close then
    ws.sent_close = true
    ws_write(ws, 8, close_payload(code))
  end
  ws.closed, ws.err = true, ws.err or err
  sclose(ws.conn)
  return nil, err
end

local VALID_CLOSE = { [1000] = true, [1001] = true, [1002] = true, [1003] = true, [1007] = true,
  [1008] = true, [1009] = true, [1010] = true, [1011] = true }

-- Reads one frame: fin, opcode, payload | nil, err (after failing the connection).
local function read_frame(ws)
  local conn = ws.conn
  local h, err = read(conn, 2)
  if not h then return nil, err end
  local b1, b2 = byte(h, 1, 2)
  local fin, op, len = b1 >= 128, band(b1, 15), band(b2, 127)
  if band(b1, 0x70) ~= 0 then return ws_fail(ws, 1002, "reserved bits set") end
  if b2 < 128 then return ws_fail(ws, 1002, "unmasked client frame") end
  if op >= 8 and (not fin or len > 125) then return ws_fail(ws, 1002, "bad control frame") end
  if len == 126 then
    local x, e = read(conn, 2)
    if not x then return nil, e end
    local a, b = byte(x, 1, 2)
    len = a * 256 + b
  elseif len == 127 then
    local x, e = read(conn, 8)
    if not x then return nil, e end
    local a, b, c, d, e5, f, g, i = byte(x, 1, 8)
    if a >= 128 then return ws_fail(ws, 1002, "bad frame length") end
    len = ((a * 256 + b) * 256 + c) * 256 + d
    len = len * 4294967296 + ((e5 * 256 + f) * 256 + g) * 256 + i
  end
  if len > ws.max then return ws_fail(ws, 1009, "message too big") end
  local key, kerr = read(conn, 4)
  if not key then return nil, kerr end
  local payload = ""
  if len > 0 then
    local p, perr = read(conn, len)
    if not p then return nil, perr end
    payload = W.ws_mask(p, key)
  end
  return fin, op, payload
end

--- ws:recv() -> data, "text"|"binary" | nil, err [, code, reason].
-- Pings are answered, pongs dropped; a close frame is answered and ends
-- the connection: nil, "closed", code, reason.
function Ws:recv()
  if self.closed then return nil, "closed" end
  local parts, kind, size = nil, nil, 0
  while true do
    local fin, op, payload = read_frame(self)
    if fin == nil then
      if not self.closed then
        self.closed = true
        sclose(self.conn)
      end
      return nil, op
    end
    if op == 9 then
      ws_write(self, 10, payload)
    elseif op == 10 then -- luacheck: ignore (pong: nothing to do)
    elseif op == 8 then
      local code, reason = nil, ""
      if #payload == 1 then return ws_fail(self, 1002, "bad close frame") end
      if #payload >= 2 then
        local a, b = byte(payload, 1, 2)
        code, reason = a * 256 + b, payload:sub(3)
        if not (VALID_CLOSE[code] or (code >= 3000 and code <= 4999)) then
          return ws_fail(self, 1002, "bad close code")
        end
        if not W.utf8_valid(reason) then return ws_fail(self, 1007, "invalid utf-8") end
      end
      if not self.sent_close then
        self.sent_close = true
        ws_write(self, 8, close_payload(code))
      end
      self.closed = true
      sclose(self.conn)
      return nil, "closed", code, reason
    elseif op == 0 then
      if not parts then return ws_fail(self, 1002, "continuation without a message") end
      size = size + #payload
      if size > self.max then return ws_fail(self, 1009, "message too big") end
      parts[#parts + 1] = payload
      if fin then
        local data = concat(parts)
        if kind == "text" and not W.utf8_valid(data) then return ws_fail(self, 1007, "invalid utf-8") end
        return data, kind
      end
    elseif op == 1 or op == 2 then
      if parts then return ws_fail(self, 1002, "new message inside a fragmented one") end
      kind = op == 1 and "text" or "binary"
      if fin then
        if op == 1 and not W.utf8_valid(payload) then return ws_fail(self, 1007, "invalid utf-8") end
        return payload, kind
      end
      parts, size = { payload }, #payload
    else
      return ws_fail(self, 1002, "unknown opcode")
    end
  end
end

--- ws:send(data [, "binary"|"text"]) -> true | nil, err
function Ws:send(data, kind)
  if type(data) ~= "string" then error("ws:send expects a string (got " .. type(data) .. ")", 2) end
  if kind ~= nil and kind ~= "text" and kind ~= "binary" then
    error('ws:send: kind must be "text" or "binary"', 2)
  end
  if self.sent_close then return nil, "closed" end
  return ws_write(self, kind == "binary" and 2 or 1, data)
end

--- ws:ping([data]) -> true | nil, err
function Ws:ping(data)
  data = data or ""
  if #data > 125 then error("ws:ping: at most 125 bytes", 2) end
  if self.sent_close then return nil, "closed" end
  return ws_write(self, 9, data)
end

--- ws:close([code, reason]) -> true: sends a close frame, waits briefly for
-- the peer's, and closes the connection.
function Ws:close(code, reason)
  if code ~= nil and (type(code) ~= "number" or code < 1000 or code > 4999) then
    error("ws:close: code must be from 1000 to 4999", 2)
  end
  if reason ~= nil and (type(reason) ~= "string" or #reason > 123) then
    error("ws:close: reason must be a string of at most 123 bytes", 2)
  end
  if self.closed then return true end
  if not self.sent_close then
    self.sent_close = true
    ws_write(self, 8, close_payload(code or 1000, reason))
  end
  -- The peer answers with its own close frame; give it a moment.
  settimeouts(self.conn, nil, 2000, 2000)
  while not self.closed do
    local fin, op = read_frame(self)
    if fin == nil or op == 8 then break end
  end
  self.closed = true
  sclose(self.conn)
  return true
end

--- req:websocket([opts]) -> ws | nil, err: completes the handshake. When it
-- fails, the server answers 400 (or 426) whatever the handler returns.
function Req:websocket(opts)
  if self._done then error("websocket: " .. FINISHED, 2) end
  if self._responded then error("websocket: the response has already been sent", 2) end
  local h = self.headers
  local accept_key = h["sec-websocket-key"] and W.ws_accept(h["sec-websocket-key"])
  local why, status
  if self.method ~= "GET" or self.version ~= "1.1" then
    why, status = "not a websocket handshake", 400
  elseif not has_token(h.upgrade, "websocket") or not has_token(h.connection, "upgrade") then
    why, status = "not a websocket handshake", 426
  elseif h["sec-websocket-version"] ~= "13" then
    why, status = "unsupported websocket version", 426
  elseif not accept_key then
    why, status = "bad Sec-WebSocket-Key", 400
  end
  if why then
    self._fail, self._close = status, true
    return nil, why
  end
  local proto = type(opts) == "table" and opts.protocol or nil
  local head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
    .. accept_key .. "\r\n" .. (proto and ("Sec-WebSocket-Protocol: " .. proto .. "\r\n") or "") .. "\r\n"
  self._responded, self._upgraded, self._close = true, true, true
  local err = write(self._conn, head)
  if err then return nil, err end
  settimeouts(self._conn, nil, self._srv.timeouts.send, nil)
  self._read_ms = nil
  local ws = setmetatable({ conn = self._conn, max = self._srv.limits.max_ws_payload }, WS_MT)
  self._ws = ws
  return ws
end

---------------------------------------------------------------------------
-- Server
---------------------------------------------------------------------------

local Server = {}
local SERVER_MT = { __index = Server }

local function report(srv, err, tb, req)
  if srv.on_error then
    local ok, e = pcall(srv.on_error, err, tb, req)
    if ok then return end
    err, tb = e, nil
  end
  local msg = "lunet.http handler: " .. tostring(tb or err)
  spawn(function() error(msg, 0) end)
end

local function run_handler(srv, req)
  local status, headers, body = srv.handler(req)
  -- Streamed, upgraded, or failed while reading: already answered or to be.
  if req._responded or req._fail then return end
  respond(req, status, headers, body)
end

local function finish_request(srv, req, ok, res, tb)
  req._done = true
  if not ok then
    if res == "cancelled" and srv.closing then
      -- Ended by srv:close(): not the handler's fault, nothing to answer.
      req._close = true
      return
    end
    report(srv, res, tb, req)
    req._close = true
    if not req._responded then send_error(req._conn, 500) end
    return
  end
  if req._fail then
    -- The body or the handshake failed: the server answers for it.
    if not req._responded and req._fail > 0 then send_error(req._conn, req._fail) end
    req._close = true
    return
  end
  local w = req._writer
  if w and not w.closed then w:close() end
  if req._ws and not req._ws.closed then req._ws:close(1000) end
end

local function errh(e)
  return { e = e, tb = traceback(e, 2) }
end

-- Serves the request whose first bytes `data` a worker got from the lot.
-- Returns true when the connection may wait for its next request, false
-- when it must close ("linger" when its unread input must be drained
-- first).
local function serve_request(srv, conn, data)
  local limits, timeouts = srv.limits, srv.timeouts
  local mh, ml, mhd = limits.max_headers, limits.max_line, limits.max_head
  local hl, method, target, path, query, minor, headers, len, chunked, close, expect =
    parse_request(data, mh, ml, mhd)
  local read_ms = timeouts.header
  if hl == false then
    -- The head came in pieces: the rest within the header timeout.
    local header_ms = timeouts.header
    local deadline = header_ms and now() + header_ms
    repeat
      if deadline then
        local left = deadline - now()
        if left <= 0 then hl, method = nil, 408 break end
        read_ms = left
        settimeouts(conn, nil, timeouts.send, left)
      end
      local more, err = read(conn)
      if not more then
        hl, method = nil, err == "timeout" and 408 or nil
        break
      end
      data = data .. more
      hl, method, target, path, query, minor, headers, len, chunked, close, expect =
        parse_request(data, mh, ml, mhd)
    until hl ~= false
  end
  if not hl then
    if method then -- the status to answer
      send_error(conn, method)
      return "linger"
    end
    return false
  end
  if hl < #data then unread(conn, data:sub(hl + 1)) end
  local req = setmetatable({
    method = method, target = target, path = path, query = query,
    version = minor == 1 and "1.1" or "1.0", headers = headers,
    _len = len or nil, _chunked = chunked or nil, _close = close or nil, _expect = expect or nil,
    _conn = conn, _srv = srv, _read_ms = read_ms,
  }, REQ_MT)
  if req._len and req._len > limits.max_body then
    send_error(conn, 413)
    return "linger"
  end
  local ok, res = xpcall(run_handler, errh, srv, req)
  if ok then
    finish_request(srv, req, true)
  else
    finish_request(srv, req, false, res.e, res.tb)
  end
  if req._close or srv.closing or not drain(req) then
    -- Input may be left unread (a body, pipelined requests).
    return not req._upgraded and "linger"
  end
  if req._read_ms ~= timeouts.header then settimeouts(conn, nil, timeouts.send, timeouts.header) end
  return true
end

-- Closing a socket with unread input makes the kernel send a reset, which
-- can destroy the response before the client reads it. So after answering
-- a request whose input was not all read, the server shuts down its write
-- side and reads (and drops) what still comes, for up to a second and
-- 1 MiB, before closing (nginx's lingering close).
local function linger(conn)
  if socket.shutdown(conn) ~= true then return end
  local stop, got = now() + 1000, 0
  while got < 1048576 do
    local left = stop - now()
    if left <= 0 then break end
    settimeouts(conn, nil, nil, left)
    local d = read(conn)
    if not d then break end
    got = got + #d
  end
end

local function drop(srv, conn)
  srv.active = srv.active - 1
  sclose(conn)
end

-- Connections wait for their next request in the server's parking lot,
-- holding no task. Workers take them from the lot as requests arrive (one
-- worker takes every connection that became ready in one poll of the loop,
-- without waiting in between). A worker that takes one while no other
-- waits has another started on the next loop iteration, so a handler that
-- waits (a database call, a long stream) never keeps the others waiting for
-- long; the lot wakes that one when connections are still queued. Surplus
-- workers end (the lot's max_waiting).
local worker, later_worker
local function work(srv, me)
  local lot, busy = srv.lot, srv.busy
  local idle_ms = srv.timeouts.idle
  while true do
    local conn, data, _, waiting = lot_next(lot)
    if not conn then
      if data ~= nil then return end -- nil, "closed" | "surplus"
      goto continue -- woken to look again: nothing returned
    end
    if waiting == 0 and not srv.starting and not srv.closing then
      srv.starting = true
      spawn(later_worker, srv)
    end
    local keep = false
    if data then
      busy[me] = conn
      local ok
      ok, keep = pcall(serve_request, srv, conn, data)
      if not ok then
        busy[me] = nil
        drop(srv, conn)
        error(keep, 0)
      end
      if keep == "linger" then pcall(linger, conn) end
      busy[me] = nil
    end
    if keep ~= true or srv.closing or not park(conn, lot, idle_ms) then
      drop(srv, conn)
    end
    ::continue::
  end
end
worker = function(srv)
  return work(srv, current())
end
later_worker = function(srv)
  sleep(0)
  srv.starting = false
  return work(srv, current())
end

local function accept_loop(srv)
  local l, lot, send = srv.listener, srv.lot, srv.timeouts.send
  local header, idle = srv.timeouts.header, srv.timeouts.idle
  while true do
    local conn, err = accept(l)
    if conn then
      srv.active = srv.active + 1
      settimeouts(conn, nil, send, header)
      if not park(conn, lot, idle) then drop(srv, conn) end
    elseif err == "listener closed" or srv.closing then
      break
    else
      sleep(10) -- out of descriptors and the like: try again shortly
    end
  end
end

local function merge(defaults, given, what)
  local t = {}
  for k, v in pairs(defaults) do t[k] = v end
  if given == nil then return t end
  if type(given) ~= "table" then error("http.serve: " .. what .. " must be a table", 3) end
  for k, v in pairs(given) do
    if defaults[k] == nil then error("http.serve: unknown " .. what .. " field " .. tostring(k), 3) end
    if v == false and what == "timeouts" then
      t[k] = nil
    elseif type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
      error("http.serve: " .. what .. "." .. k .. " must be a positive number", 3)
    else
      t[k] = v
    end
  end
  return t
end

--- http.serve(opts, handler) -> server | nil, err
function M.serve(opts, handler)
  if type(opts) ~= "table" then error("http.serve expects an options table (got " .. type(opts) .. ")", 2) end
  if type(handler) ~= "function" then
    error("http.serve expects a handler function (got " .. type(handler) .. ")", 2)
  end
  if opts.tls ~= nil and type(opts.tls) ~= "table" then
    error("http.serve: tls must be a table of TLS options ({cert_file =, key_file =, ...})", 2)
  end
  if opts.on_error ~= nil and type(opts.on_error) ~= "function" then
    error("http.serve: on_error must be a function", 2)
  end
  local limits = merge(DEFAULT_LIMITS, opts.limits, "limits")
  if limits.max_body > 2 ^ 53 then error("http.serve: limits.max_body must be at most 2^53", 2) end
  local timeouts = merge(DEFAULT_TIMEOUTS, opts.timeouts, "timeouts")
  local host, port = opts.host or "127.0.0.1", opts.port
  if type(port) ~= "number" then error("http.serve: port must be a number (0 picks a free one)", 2) end
  -- https: lunet.socket's TLS (a connection's handshake advances as its
  -- bytes arrive, while it waits in the lot; a failed one ends it there).
  local l, err = listen("tcp", host, port, { backlog = opts.backlog, tls = opts.tls })
  if not l then return nil, err end
  local ahost, aport = socket.getsockname(l)
  local srv = setmetatable({
    listener = l, handler = handler, on_error = opts.on_error, limits = limits, timeouts = timeouts,
    lot = parking(), busy = {}, active = 0, closing = false, starting = false, host = ahost, port = aport,
  }, SERVER_MT)
  srv.task = spawn(accept_loop, srv)
  spawn(worker, srv)
  return srv
end

--- srv:address() -> host, port
function Server:address()
  return self.host, self.port
end

--- srv:connections() -> the number of open connections.
function Server:connections()
  return self.active
end

--- srv:close([grace_ms]): stops accepting; idle connections close now,
-- requests in flight finish (answered with Connection: close). Handlers
-- still running `grace_ms` later (default 5000; 0: now) -- long streams,
-- Server-Sent Events, WebSockets -- are ended: their connection is closed
-- and their task cancelled.
function Server:close(grace_ms)
  if self.closing then return end
  if grace_ms ~= nil and (type(grace_ms) ~= "number" or grace_ms < 0 or grace_ms ~= grace_ms) then
    error("srv:close: grace_ms must be a number >= 0", 2)
  end
  self.closing = true
  sclose(self.listener)
  self.active = self.active - self.lot:close()
  local busy = self.busy
  if next(busy) == nil then return end
  spawn(function()
    local stop = now() + (grace_ms or 5000)
    while next(busy) ~= nil and now() < stop do sleep(math.min(50, stop - now())) end
    for task, conn in pairs(busy) do
      busy[task] = nil
      sclose(conn)
      task:cancel("server closed")
    end
  end)
end
-- The calls that wait go through lunet's yield guard, like the core's:
-- "<name> must be called from coroutine" on the main thread.
for name, f in pairs({ body = Req.body, stream = Req.stream, sse = Req.sse, websocket = Req.websocket }) do
  Req[name] = guard("req:" .. name, f)
end
Reader.read = guard("reader:read", Reader.read)
Writer.write, Writer.close = guard("w:write", Writer.write), guard("w:close", Writer.close)
Sse.send, Sse.comment = guard("sse:send", Sse.send), guard("sse:comment", Sse.comment)
Sse.write, Sse.close = Writer.write, Writer.close
for name, f in pairs({ recv = Ws.recv, send = Ws.send, ping = Ws.ping, close = Ws.close }) do
  Ws[name] = guard("ws:" .. name, f)
end
-- Handle types, by name in the registry (tools find the methods there).
local reg = debug.getregistry()
reg["lunet.http.server"], reg["lunet.http.request"], reg["lunet.http.writer"] = SERVER_MT, REQ_MT, WRITER_MT
reg["lunet.http.sse"], reg["lunet.http.websocket"] = SSE_MT, WS_MT
reg["lunet.http.body_reader"] = READER_MT
for _, name in ipairs({ "server", "request", "writer", "sse", "websocket", "body_reader" }) do
  reg["lunet.http." .. name].__name = "lunet.http." .. name -- as the core's handles have
end

M.reasons = REASONS
return M
end
