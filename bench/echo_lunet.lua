-- The lunet side of the TCP echo benchmark (bench/net.sh): every read is
-- written straight back, one coroutine per connection.
--
--   lunet-run bench/echo_lunet.lua [port]     (0 or nothing = any free port)
local lunet = require("lunet")
local socket = require("lunet.socket")

local read, write = socket.read, socket.write

local function echo(conn)
  while true do
    local data = read(conn)
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
