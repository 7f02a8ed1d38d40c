-- tinyhttp: just enough HTTP/1.1 for the lunet examples.
--
-- One coroutine per connection, keep-alive by default, request heads read
-- with socket.read_until and bodies with socket.read(conn, n) (pipelined
-- requests wait in the connection's buffer), and a
-- clean shutdown on SIGINT/SIGTERM. Under `lunet-run --workers N` the core
-- drains instead: the last response on each connection says
-- "Connection: close", and connections idle for a second are closed.
-- Not a production server: no chunked request bodies, no timeouts, minimal
-- validation.
local lunet = require("lunet")
local socket = require("lunet.socket")

local M = {}

local MAX_HEAD = 64 * 1024
local MAX_BODY = 8 * 1024 * 1024

local REASONS = {
  [200] = "OK", [201] = "Created", [204] = "No Content", [400] = "Bad Request",
  [404] = "Not Found", [405] = "Method Not Allowed", [413] = "Payload Too Large",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [501] = "Not Implemented",
}

local common = require("common")
M.json, M.array = common.json, common.array

---------------------------------------------------------------- requests

-- Reads one request from `conn` with the socket's own framing: the head up
-- to its blank line, then exactly Content-Length bytes of body (the
-- connection's buffer keeps whatever a pipelining client sent after it).
-- Returns req — or nil, status (for a bad request), or nil at EOF.
---@async
local function read_request(conn)
  local head, err = socket.read_until(conn, "\r\n\r\n", { max = MAX_HEAD })
  if not head then
    if err == "too long" then return nil, 431 end
    return nil
  end

  local method, target, version = head:match("^(%u+) (%S+) HTTP/(%d%.%d)")
  if not method then return nil, 400 end
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    headers[name:lower()] = value
  end
  if headers["transfer-encoding"] then return nil, 501 end

  local length = tonumber(headers["content-length"] or "0")
  if not length or length < 0 or length % 1 ~= 0 then return nil, 400 end
  if length > MAX_BODY then return nil, 413 end
  local body = ""
  if length > 0 then
    body = socket.read(conn, length)
    if not body then return nil end
  end

  local path, query = target:match("^([^?]*)%??(.*)$")
  local conn_hdr = (headers.connection or ""):lower()
  local keep = (version == "1.1" and conn_hdr ~= "close") or (version == "1.0" and conn_hdr == "keep-alive")
  return { method = method, path = path, query = query, version = version,
    headers = headers, body = body, keep_alive = keep }
end

---@async
local function send(conn, status, body, content_type, keep)
  local head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n")
    :format(status, REASONS[status] or "Unknown", content_type, #body, keep and "keep-alive" or "close")
  -- One vectored write per response: head and body leave together.
  return socket.write(conn, { head, body })
end

local idle = {} -- connections waiting for their next request -> since when
local IDLE_CLOSE_MS = 1000

---@async
local function serve_connection(conn, handler)
  while true do
    idle[conn] = lunet.now()
    local req, status = read_request(conn)
    idle[conn] = nil
    if not req then
      if status then send(conn, status, M.json({ error = REASONS[status] }), "application/json", false) end
      break
    end
    local ok, status, body, ctype = pcall(handler, req)
    if not ok then
      io.stderr:write("handler error: ", tostring(status), "\n")
      status, body, ctype = 500, M.json({ error = "internal error" }), "application/json"
    end
    if type(body) == "table" then body, ctype = M.json(body), "application/json" end
    local keep = req.keep_alive and not lunet.worker().draining
    if send(conn, status, body or "", ctype or "text/plain; charset=utf-8", keep) or not keep then
      break
    end
  end
  socket.close(conn)
end

--- Serves `handler(req) -> status, body[, content_type]` (a table body is sent
-- as JSON) on host:port until SIGINT or SIGTERM. Prints the address it
-- listens on. Call it from the main chunk; it returns at once.
function M.serve(host, port, handler)
  local listener = assert(socket.listen("tcp", host, port))
  local bound_host, bound_port = socket.getsockname(listener)
  print(("listening on http://%s:%d/"):format(bound_host, bound_port))
  io.stdout:flush()

  lunet.spawn(function()
    while true do
      local conn = socket.accept(listener)
      if not conn then break end -- listener closed: shutting down
      lunet.spawn(serve_connection, conn, handler)
    end
  end)

  if lunet.worker().supervised then
    -- The core closes the listener on SIGTERM/SIGINT. A connection idle
    -- right now may have its next request on the way: only those idle for
    -- a while are closed (busy ones end with "Connection: close").
    lunet.on_drain(function()
      while next(idle) do
        local now = lunet.now()
        for conn, since in pairs(idle) do
          if now - since >= IDLE_CLOSE_MS then
            idle[conn] = nil
            socket.close(conn)
          end
        end
        lunet.sleep(100)
      end
    end)
    return
  end
  common.stop_on_signals(function() socket.close(listener) end)
end

M.port = common.port

return M
