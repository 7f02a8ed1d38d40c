-- The lunet side of the TCP echo benchmark (bench/net.sh): every read is
-- written straight back, one coroutine per connection.
--
--   lunet-run bench/echo_lunet.lua [port]     (0 or nothing = any free port)
--
-- ECHO_EXACT=n reads exactly n bytes per message with socket.read(conn, n)
-- (bench/net.sh runs both forms). ECHO_READ_SIZE=n sets socket.set_read_buffer_size(n) first (for
-- experiments; bench/net.sh runs it with the default 64 KiB).
local lunet = require("lunet")
local socket = require("lunet.socket")

local read_size = tonumber(os.getenv("ECHO_READ_SIZE") or "")
if read_size then socket.set_read_buffer_size(read_size) end

local read, write = socket.read, socket.write
local exact = tonumber(os.getenv("ECHO_EXACT") or "")

local function echo(conn)
  while true do
    local data = read(conn, exact)
    if not data or write(conn, data) then break end
  end
  socket.close(conn)
end

local listener = assert(socket.listen("tcp", "127.0.0.1", tonumber(arg[1]) or 0))
local _, port = socket.getsockname(listener)
print("listening on 127.0.0.1:" .. port)
io.stdout:flush()

lunet.spawn(function()
  while true do
    local conn = socket.accept(listener)
    if not conn then break end
    lunet.spawn(echo, conn)
  end
end)
