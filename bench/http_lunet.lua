-- The lunet side of the HTTP keep-alive benchmark (bench/net.sh).
--
--   lunet-run bench/http_lunet.lua [port]     (0 or nothing = any free port)
--
-- Deliberately minimal: one coroutine per connection, every complete request
-- head ("\r\n\r\n") is answered with the same fixed response the luv and nginx
-- servers send, one socket.write per batch of requests read together.
-- HTTP_READ=lines reads each request line by line with socket.read(conn,
-- "*l") instead (the streams issue's comparison: the library's line reader
-- against the hand-rolled buffer).
-- HTTPS (bench/tls.sh): HTTP_TLS_CERT and HTTP_TLS_KEY serve TLS; with
-- HTTP_CLOSE=1 every response says "Connection: close" and the connection is
-- closed (one full handshake per request).
-- SIGUSR1 prints the Lua heap after a full collection (used by the
-- idle-connection memory measurement); SIGTERM exits.
local lunet = require("lunet")
local socket = require("lunet.socket")

local BODY = "Hello, World!"
local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
  .. #BODY .. "\r\n\r\n" .. BODY

local read, write, close = socket.read, socket.write, socket.close
local find, sub, rep = string.find, string.sub, string.rep

local function serve(conn)
  local rest = ""
  while true do
    local data = read(conn)
    if not data then break end
    if rest ~= "" then data = rest .. data end
    local count, pos = 0, 1
    while true do
      local e = find(data, "\r\n\r\n", pos, true)
      if not e then break end
      count, pos = count + 1, e + 4
    end
    rest = sub(data, pos)
    if count > 0 then
      if write(conn, count == 1 and RESPONSE or rep(RESPONSE, count)) then break end
    end
  end
  close(conn)
end

-- One request per blank-line-terminated head, read line by line.
local function serve_lines(conn)
  while true do
    local line = read(conn, "*l")
    if not line then break end
    repeat
      line = read(conn, "*l")
    until not line or line == ""
    if not line or write(conn, RESPONSE) then break end
  end
  close(conn)
end

if os.getenv("HTTP_READ") == "lines" then serve = serve_lines end

if os.getenv("HTTP_CLOSE") == "1" then
  local CLOSE_RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: "
    .. #BODY .. "\r\n\r\n" .. BODY
  serve = function(conn)
    if read(conn, "*l") then
      repeat local line = read(conn, "*l") until not line or line == ""
      write(conn, CLOSE_RESPONSE)
    end
    close(conn)
  end
end

local tls
if os.getenv("HTTP_TLS_CERT") then
  tls = { cert_file = os.getenv("HTTP_TLS_CERT"), key_file = os.getenv("HTTP_TLS_KEY") }
end
local listener = assert(socket.listen("tcp", "127.0.0.1", tonumber(arg[1]) or 0, { tls = tls }))
local _, port = socket.getsockname(listener)
print("listening on 127.0.0.1:" .. port)
io.stdout:flush()

lunet.spawn(function()
  while true do
    local conn = socket.accept(listener)
    if not conn then break end
    lunet.spawn(serve, conn)
  end
end)

require("bench.server_signals")()
