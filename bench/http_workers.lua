-- A keep-alive HTTP server written for `lunet-run --workers N` (used by
-- scripts/test-workers.sh and bench/workers.sh); it also runs alone.
--
--   lunet-run --workers 2 bench/http_workers.lua PORT
--
-- Every response's body is the answering process's id. How a worker drains
-- (the pattern README "Workers" describes):
--   * its listener is closed by the core when the drain starts, so the
--     accept loop ends with nil, "listener closed";
--   * a connection in the middle of a request finishes it, answering with
--     "Connection: close" once lunet.worker().draining is true;
--   * an idle keep-alive connection is noticed by its read timeout (1 s) and
--     closed if the worker drains (else the read simply goes on).
-- A request with "Connection: close" gets its answer and the connection
-- closes (wrk -H "Connection: close": a new connection per request).
-- GET /stats answers with lunet.stats() of the answering worker (a few
-- fields, as text).
local lunet = require("lunet")
local socket = require("lunet.socket")

local port = tonumber(arg[1]) or 8080
local IDLE_CHECK_MS = 1000
local pid = tostring(lunet.getpid())
local read, write, close, worker = socket.read, socket.write, socket.close, lunet.worker

local function response(body, closing)
  return ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s")
    :format(#body, closing and "Connection: close\r\n" or "", body)
end

local function stats_text()
  local s = lunet.stats()
  return ("pid %d worker %d iterations %d bytes_in %d bytes_out %d connections %d listeners %d waiting %d\n")
    :format(s.pid, worker().id, s.loop_iterations, s.bytes_in, s.bytes_out, s.handles.connections,
      s.handles.listeners, s.tasks.waiting)
end

local function serve(conn)
  socket.settimeout(conn, IDLE_CHECK_MS)
  while true do
    local line, err = read(conn, "*l")
    if not line then
      if err ~= "timeout" or worker().draining then break end
    else
      local path = line:match("^%u+ (%S+)")
      local closing = worker().draining
      repeat
        line = read(conn, "*l")
        if line and line:lower() == "connection: close" then closing = true end
      until line == "" or line == nil
      if line == nil then break end
      local body = path == "/stats" and stats_text() or pid
      if write(conn, response(body, closing)) or closing then break end
    end
  end
  close(conn)
end

local listener = assert(socket.listen("tcp", "127.0.0.1", port))
lunet.spawn(function()
  while true do
    local conn = socket.accept(listener)
    if not conn then break end
    lunet.spawn(serve, conn)
  end
end)
